"""regioncache as users install it, not as the source tree runs it (issue 12).

The wheels come from tools/build-wheels (.ci/setup runs it for this
interpreter before the tests; a missing wheel is a failure):
  build/wheels/raw/regioncache-*-linux_x86_64.whl    what `pip install .` builds
                                                    and installs (same PEP 517 build)
  dist/regioncache-*-manylinux_*.whl                 the repaired wheel, libraries inside
Each goes into a fresh venv of this interpreter with the pinned Django, and
the children run with a clean environment (no PYTHONPATH to the source tree,
cwd outside it), so they import the installed package.

The repaired wheel is installed and run inside a mount namespace where the
system's libmemcached, libhashkit, libzstd and libxxhash (the runtime .so
files, the -dev symlinks, headers and pkg-config files), the C/C++ compilers
and cmake are covered by /dev/null: what works there needs none of them.
That needs root (CI is root); elsewhere those tests skip, unless
REGIONCACHE_REQUIRE_ROOT=1 as in CI.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

import django
import pytest

import harness

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
PY = "%d.%d" % sys.version_info[:2]
TAG = "cp%d%d" % sys.version_info[:2]
BUNDLED = ("libmemcached", "libzstd", "libxxhash")


def source_version():
    for line in (ROOT / "django_backend" / "regioncache" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__ = "):
            return line.split('"')[1]
    raise AssertionError("no __version__ in regioncache/__init__.py")


VERSION = source_version()


def wheel(kind):
    pattern = {
        "raw": ROOT / "build" / "wheels" / "raw" / f"regioncache-{VERSION}-{TAG}-{TAG}-linux_*.whl",
        "repaired": ROOT / "dist" / f"regioncache-{VERSION}-{TAG}-{TAG}-manylinux_*.whl",
    }[kind]
    found = sorted(glob.glob(str(pattern)))
    if not found:
        pytest.fail(f"no {pattern.name}: run tools/build-wheels {sys.executable} first "
                    "(.ci/setup does)")
    return Path(found[-1])


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")}
    env.update(extra)
    return env


def require_root():
    harness.require_root("hiding the system's libraries needs a mount namespace (root)")


# --- a namespace without the build tools and the system's copies --------------

LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/local/lib"]
LIB_NAMES = ["libmemcached", "libmemcachedutil", "libhashkit", "libzstd", "libxxhash"]
HEADERS = ["/usr/include/libmemcached", "/usr/include/libmemcached-1.0", "/usr/include/libhashkit",
           "/usr/include/libhashkit-1.0", "/usr/include/zstd.h", "/usr/include/zdict.h",
           "/usr/include/zstd_errors.h", "/usr/include/xxhash.h", "/usr/include/xxh3.h"]
TOOLS = ["cc", "c++", "gcc", "g++", "cpp", "ld", "cmake", "x86_64-linux-gnu-gcc-12",
         "x86_64-linux-gnu-g++-12", "x86_64-linux-gnu-cpp-12", "x86_64-linux-gnu-ld", "pkg-config"]


def hidden_paths():
    files, dirs = set(), set()
    for d in LIB_DIRS:
        for name in LIB_NAMES:
            for p in glob.glob(f"{d}/{name}.*") + glob.glob(f"{d}/{name}-*"):
                files.add(os.path.realpath(p))
            for p in glob.glob(f"{d}/pkgconfig/{name}.pc"):
                files.add(os.path.realpath(p))
    for p in HEADERS:
        if os.path.isdir(p):
            dirs.add(os.path.realpath(p))
        elif os.path.exists(p):
            files.add(os.path.realpath(p))
    for t in TOOLS:
        for d in ("/usr/bin", "/usr/local/bin"):
            if os.path.exists(f"{d}/{t}"):
                files.add(os.path.realpath(f"{d}/{t}"))
    for shim in glob.glob(os.path.expanduser("~/.pyenv/shims/cmake")):
        files.add(os.path.realpath(shim))
    return sorted(files), sorted(dirs)


def without_build_tools(argv):
    """argv run in a new mount namespace where every library, header,
    pkg-config file and compiler above reads as empty (/dev/null)."""
    files, dirs = hidden_paths()
    assert any("libzstd.so.1" in f or "libzstd.so.1." in f for f in files), files
    empty = tempfile.mkdtemp(prefix="regioncache-empty-")
    script = ["set -e"]
    script += [f"mount --bind /dev/null '{f}'" for f in files]
    script += [f"mount --bind '{empty}' '{d}'" for d in dirs]
    script.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script),
            "sh", *map(str, argv)]


# --- venvs --------------------------------------------------------------------

def make_venv(path, wheel_path, hide):
    run = without_build_tools if hide else (lambda argv: argv)
    subprocess.run(run([sys.executable, "-m", "venv", path]), check=True, env=clean_env(),
                   timeout=120)
    proc = subprocess.run(
        run([f"{path}/bin/python", "-m", "pip", "install", "-q", "--only-binary", ":all:",
             str(wheel_path), f"django=={django.__version__}"]),
        capture_output=True, text=True, env=clean_env(), cwd=path, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Path(path)


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix=f"regioncache-install-{os.getpid()}-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def raw_venv(workdir):
    return make_venv(workdir / "raw", wheel("raw"), hide=False)


@pytest.fixture(scope="module")
def wheel_venv(workdir):
    require_root()
    return make_venv(workdir / "wheel", wheel("repaired"), hide=True)


def run_in(venv, code_or_argv, hide=False, **kw):
    argv = [f"{venv}/bin/python", "-c", code_or_argv] if isinstance(code_or_argv, str) \
        else [f"{venv}/bin/python", *code_or_argv]
    if hide:
        argv = without_build_tools(argv)
    kw.setdefault("env", clean_env())
    kw.setdefault("cwd", str(venv))
    return subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


# --- the wheels' contents and metadata ---------------------------------------------

@pytest.mark.parametrize("kind", ["raw", "repaired"])
def test_wheel_has_every_module_and_the_metadata(kind):
    with zipfile.ZipFile(wheel(kind)) as z:
        names = z.namelist()
        meta = z.read(f"regioncache-{VERSION}.dist-info/METADATA").decode()
    for needed in ["regioncache/__init__.py", "regioncache/backends.py",
                   "regioncache/management/__init__.py",
                   "regioncache/management/commands/__init__.py",
                   "regioncache/management/commands/cacheregions.py",
                   "regioncache/py.typed", "regioncache/_native.pyi",
                   f"regioncache-{VERSION}.dist-info/licenses/LICENSE"]:
        assert needed in names, (needed, names)
    assert any(n.startswith("regioncache/_native.cpython-") and n.endswith(".so") for n in names)
    if kind == "repaired":
        libs = [n for n in names if n.startswith("regioncache.libs/")]
        for lib in BUNDLED:
            assert any(n.startswith(f"regioncache.libs/{lib}") for n in libs), (lib, libs)
    assert f"Version: {VERSION}\n" in meta
    assert "Requires-Python: <3.14,>=3.11" in meta
    for classifier in ["Framework :: Django :: 4.2", "Framework :: Django :: 5.2",
                       "Framework :: Django :: 6.1", "Programming Language :: Python :: 3.11",
                       "Programming Language :: Python :: 3.12",
                       "Programming Language :: Python :: 3.13",
                       "Operating System :: POSIX :: Linux"]:
        assert f"Classifier: {classifier}\n" in meta, classifier
    assert "License-Expression: BSD-3-Clause\n" in meta
    assert "Requires-Dist: Django" in meta
    assert "# regioncache" in meta  # the README is the long description


# --- the management command from a normal install and from the wheel -----------------

def check_cacheregions(venv, hide):
    run = f"install-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = clean_env(PYTHONPATH=str(TESTS_DIR), DJANGO_SETTINGS_MODULE="djangoproject.settings",
                    REGIONCACHE_TEST_RUN=run, REGIONCACHE_TEST_TMP=str(Path(venv) / run))
    try:
        where = run_in(venv, "import regioncache, regioncache._native as n; print(n.__file__)",
                       hide=hide, env=env)
        assert where.returncode == 0, where.stderr
        assert where.stdout.startswith(str(venv) + "/lib/"), where.stdout
        fill = run_in(venv, "import django; django.setup(); from django.core.cache import caches; "
                      "caches['default'].set('installed-key', 1)", hide=hide, env=env)
        assert fill.returncode == 0, fill.stderr
        proc = run_in(venv, ["-m", "django", "cacheregions", "keys", "default"], hide=hide, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "installed-key" in proc.stdout, proc.stdout
    finally:
        run_in(venv, ["-m", "regioncache", "drop-shm", f"{run}-default", f"{run}-pages"],
               hide=hide, env=env)


def test_cacheregions_from_a_normal_install(raw_venv):
    check_cacheregions(raw_venv, hide=False)


def test_cacheregions_from_the_wheel(wheel_venv):
    check_cacheregions(wheel_venv, hide=True)


# --- the wheel's libraries ----------------------------------------------------------

MAPS = """
import ctypes, json, regioncache._native as n
maps = {line.split()[-1] for line in open('/proc/self/maps') if '/' in line}
# the system's copy, by its usual name, is not usable here (hidden)
try:
    ctypes.CDLL('libzstd.so.1'); system_zstd = 'loaded'
except OSError as e:
    system_zstd = str(e)
print(json.dumps({'maps': sorted(maps), 'native': n.__file__, 'system_zstd': system_zstd}))
"""


def test_wheel_loads_its_own_libraries_without_the_systems(wheel_venv):
    proc = run_in(wheel_venv, MAPS, hide=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    libs_dir = str(Path(out["native"]).parent.parent / "regioncache.libs") + "/"
    assert libs_dir.startswith(str(wheel_venv)), libs_dir
    for lib in BUNDLED:
        mapped = [m for m in out["maps"] if os.path.basename(m).startswith(lib)]
        assert mapped, (lib, out["maps"])
        assert all(m.startswith(libs_dir) for m in mapped), (lib, mapped)
    # In the namespace the system's libzstd is /dev/null: it cannot be loaded,
    # yet the module above imported and mapped its own.
    assert out["system_zstd"] != "loaded", out
    # No compiler in there either.
    cc = subprocess.run(without_build_tools(["sh", "-c", "cc --version"]), capture_output=True)
    assert cc.returncode != 0


@pytest.mark.parametrize("backend", ["shm", "file", "memcached"])
def test_djangos_cache_suite_from_the_wheel(wheel_venv, backend):
    proc = run_in(wheel_venv, [str(TESTS_DIR / "django_suite" / "run.py"), backend],
                  hide=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-20000:]
    ran = [line for line in out.splitlines() if line.startswith("Ran ")]
    assert ran and int(ran[-1].split()[1]) >= 50, out[-5000:]


# --- unsupported versions are refused with the supported range -----------------------------

def test_unsupported_django_is_refused_at_install_and_import(workdir):
    venv = workdir / "django51"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, env=clean_env(), timeout=120)
    pip = [f"{venv}/bin/python", "-m", "pip", "install", "--only-binary", ":all:"]
    refused = subprocess.run(pip + [str(wheel("raw")), "django==5.1.15"],
                             capture_output=True, text=True, env=clean_env(), timeout=300)
    assert refused.returncode != 0
    assert (f"regioncache {VERSION} depends on Django!=5.0.*, !=5.1.*, !=6.0.*, <6.2 and >=4.2"
            in refused.stdout), refused.stdout + refused.stderr
    # Forced past pip (a Django installed afterwards): refused at import.
    forced = subprocess.run(pip + ["--no-deps", str(wheel("raw")), "django==5.1.15", "asgiref",
                                   "sqlparse"],
                            capture_output=True, text=True, env=clean_env(), timeout=300)
    assert forced.returncode == 0, forced.stderr
    proc = run_in(venv, "import regioncache")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: regioncache supports Python 3.11, 3.12 and 3.13 "
                           "with Django 4.2 LTS or 5.2 LTS"), proc.stderr
    assert f"this is Django 5.1.15 on Python {PY}" in last, last


def find_python310():
    for p in [*sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3"))),
              shutil.which("python3.10")]:
        if p and subprocess.run([p, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
                                capture_output=True).returncode == 0:
            return p
    pytest.fail("no Python 3.10 (python3.10 or pyenv): the refusal test needs one")


def test_unsupported_python_is_refused_at_install_and_import(workdir):
    py310 = find_python310()
    # pip reads Requires-Python from the project before it builds anything.
    proc = subprocess.run(
        [py310, "-m", "pip", "install", "--dry-run", "--no-deps", str(ROOT)],
        capture_output=True, text=True, env=clean_env(), cwd=workdir, timeout=300,
    )
    assert proc.returncode != 0
    assert "requires a different Python" in proc.stderr and "<3.14,>=3.11" in proc.stderr, \
        proc.stderr
    # The source tree on 3.10: the message, not an error from inside.
    proc = subprocess.run([py310, "-c", "import regioncache"], capture_output=True, text=True,
                          env=clean_env(PYTHONPATH=str(ROOT / "django_backend")), cwd=workdir)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "ImportError: regioncache supports Python 3.11, 3.12 and 3.13 with Django 4.2 LTS or "
        "5.2 LTS, and Python 3.12 and 3.13 with Django 6.1; this is Python 3.10"), proc.stderr


# --- the stub of regioncache._native --------------------------------------------------

def test_stub_names_every_native_method_with_its_parameters():
    """_native.pyi (what editors and mypy read) against the module itself: the
    same methods, properties, functions and exceptions, and each method's
    parameters in the order of the C method's own signature line."""
    import ast
    import inspect

    import regioncache
    from regioncache import _native

    assert regioncache.__file__.startswith(str(ROOT)), regioncache.__file__  # this tree's module
    tree = ast.parse((ROOT / "django_backend" / "regioncache" / "_native.pyi").read_text())
    top = {n.name: n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    cache = top["Cache"]
    stub = {n.name: n for n in cache.body if isinstance(n, ast.FunctionDef)}
    stub_attrs = {n.target.id for n in cache.body if isinstance(n, ast.AnnAssign)}
    runtime = {name: inspect.getattr_static(_native.Cache, name) for name in dir(_native.Cache)
               if not name.startswith("__")}
    for name, attr in runtime.items():
        if isinstance(attr, type(inspect.getattr_static(_native.Cache, "get"))):
            assert name in stub, f"Cache.{name} is not in _native.pyi"
            params = [a.arg for a in stub[name].args.posonlyargs + stub[name].args.args][1:]
            doc = attr.__doc__ or ""
            if doc.startswith(name + "("):  # "get(key, default=None, version=None) -> ..."
                sig = doc[len(name) + 1:doc.index(")")]
                want = [p.split("=")[0].strip() for p in sig.split(",") if p.strip()]
                assert params == want, (name, params, want)
        else:  # a data descriptor: a property or an annotated attribute
            assert name in stub or name in stub_attrs, f"Cache.{name} is not in _native.pyi"
    for name in stub:
        assert name in runtime, f"_native.pyi has Cache.{name}, the module does not"
    for name in dir(_native):
        if name.startswith("__") or name == "Cache":
            continue
        assert name in top, f"_native.{name} is not in _native.pyi"
    # get, set, list_entries, stats, purge ... say what they return
    for name in ("get", "set", "get_many", "set_many", "list_entries", "stats", "purge"):
        assert stub[name].returns is not None, name


# --- the desktop app: cmake --install ---------------------------------------------------

def test_cmake_install_puts_the_app_and_its_desktop_entry_in_place(tmp_path):
    """The release build of .ci/setup (build/release, with the app) installed
    into a prefix: bin/regioncache-gui runs from there, and the desktop entry
    launches it by that name."""
    build = ROOT / "build" / "release"
    if not (build / "regioncache-gui").exists():
        pytest.fail(f"no {build}/regioncache-gui: .ci/setup builds it (cmake --build build/release)")
    prefix = tmp_path / "prefix"
    proc = subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*") if p.is_file())
    assert installed == ["bin/regioncache-gui", "share/applications/regioncache-gui.desktop"], \
        installed
    app = prefix / "bin" / "regioncache-gui"
    assert os.access(app, os.X_OK)
    ran = subprocess.run([str(app), "--version"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert ran.returncode == 0, ran.stderr
    assert "regioncache-gui" in ran.stdout + ran.stderr
    entry = (prefix / "share" / "applications" / "regioncache-gui.desktop").read_text()
    lines = entry.splitlines()
    assert lines[0] == "[Desktop Entry]"
    fields = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert fields["Type"] == "Application"
    assert fields["Exec"].split()[0] == "regioncache-gui"  # found on PATH under bin/
    assert fields["Name"] and fields["Categories"].endswith(";")
    # freedesktop.org's validator (Debian desktop-file-utils, .ci/setup installs it)
    check = subprocess.run(["desktop-file-validate", str(prefix / "share" / "applications" /
                                                     "regioncache-gui.desktop")],
                           capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout + check.stderr


def test_installed_stub_matches_the_module_for_mypy(raw_venv):
    """mypy's stubtest on the installed package (stub and module from the
    wheel): every name of regioncache._native in the stub and the other way
    round; and mypy type-checks a use of it (an error where one is due)."""
    pip = run_in(raw_venv, ["-m", "pip", "install", "-q", "--only-binary", ":all:", "mypy>=1.18"],
                 timeout=300)
    assert pip.returncode == 0, pip.stderr
    proc = run_in(raw_venv, ["-m", "mypy.stubtest", "regioncache._native"], timeout=300)
    assert proc.returncode == 0 and "Success" in proc.stdout, proc.stdout + proc.stderr
    use = Path(raw_venv) / "use_native.py"
    use.write_text(
        "from regioncache import _native\n"
        "def f(c: _native.Cache) -> None:\n"
        "    entries, cursor = c.list_entries(glob='*', limit=10)\n"
        "    size: int = entries[0]['size']\n"
        "    hits: int = c.stats()['hits']\n"
        "    removed: str = c.purge('*')\n"  # purge returns int: the one error
    )
    proc = run_in(raw_venv, ["-m", "mypy", str(use)], timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "use_native.py:6: error: Incompatible types in assignment" in proc.stdout, proc.stdout
    assert "Found 1 error" in proc.stdout, proc.stdout
