#include "stats_chart.h"

#include <QPainter>
#include <QPainterPath>

namespace rcgui {

StatsChart::StatsChart(QWidget* parent) : QWidget(parent) {
  setMinimumHeight(110);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Preferred);
}

void StatsChart::setSeries(const QString& title, const std::deque<RegionSample>& samples) {
  title_ = title;
  samples_ = samples;
  update();
}

void StatsChart::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  p.fillRect(rect(), palette().base());
  const QFontMetrics fm = p.fontMetrics();
  const int top = fm.height() + 6, left = fm.horizontalAdvance("100%") + 8;
  const QRect plot(left, top, width() - left - 8, height() - top - fm.height() - 6);
  if (plot.width() < 20 || plot.height() < 20) return;

  p.setPen(palette().text().color());
  p.drawText(QRect(4, 2, width() - 8, fm.height()), Qt::AlignLeft,
             title_.isEmpty() ? QString("no region selected") : title_);
  const QColor fill_color(33, 113, 181), hit_color(49, 163, 84);
  int lx = width() - 8;
  for (auto [name, color] : {std::pair{QString("hit ratio"), hit_color}, std::pair{QString("fill"), fill_color}}) {
    lx -= fm.horizontalAdvance(name);
    p.setPen(color);
    p.drawText(lx, fm.ascent() + 2, name);
    lx -= 18;
    p.fillRect(lx + 4, fm.ascent() / 2, 10, 4, color);
  }
  p.setPen(palette().mid().color());
  for (int pct = 0; pct <= 100; pct += 50) {
    int y = plot.bottom() - plot.height() * pct / 100;
    p.drawLine(plot.left(), y, plot.right(), y);
    p.drawText(QRect(0, y - fm.height() / 2, left - 4, fm.height()), Qt::AlignRight,
               QString("%1%").arg(pct));
  }
  if (samples_.size() < 2) {
    p.drawText(plot, Qt::AlignCenter, "collecting samples… (auto-refresh adds one per interval)");
    return;
  }
  const qint64 t0 = samples_.front().t_ms, t1 = samples_.back().t_ms;
  const double span = t1 > t0 ? double(t1 - t0) : 1.0;
  auto point = [&](const RegionSample& s, double v) {
    return QPointF(plot.left() + plot.width() * double(s.t_ms - t0) / span,
                   plot.bottom() - plot.height() * std::clamp(v, 0.0, 1.0));
  };
  QPainterPath fill_path, hit_path;
  bool hit_open = false;
  for (size_t i = 0; i < samples_.size(); ++i) {
    const RegionSample& s = samples_[i];
    if (i == 0) fill_path.moveTo(point(s, s.fill));
    else fill_path.lineTo(point(s, s.fill));
    if (s.hit_ratio < 0) {
      hit_open = false;  // no lookups in this interval: a gap, not a zero
      continue;
    }
    if (hit_open) hit_path.lineTo(point(s, s.hit_ratio));
    else hit_path.moveTo(point(s, s.hit_ratio));
    hit_open = true;
  }
  p.setPen(QPen(fill_color, 2));
  p.drawPath(fill_path);
  p.setPen(QPen(hit_color, 2));
  p.drawPath(hit_path);
  p.setPen(palette().text().color());
  p.drawText(QRect(plot.left(), plot.bottom() + 2, plot.width(), fm.height()), Qt::AlignRight,
             QString("last %1 s").arg((t1 - t0) / 1000));
}

}  // namespace rcgui
