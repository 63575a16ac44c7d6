// A small line chart of one region's fill and hit ratio over time, painted
// with QPainter (no Qt Charts needed). Both series are fractions 0..1.
#pragma once

#include <QWidget>
#include <deque>

#include "region_list_model.h"

namespace rcgui {

class StatsChart : public QWidget {
  Q_OBJECT

 public:
  explicit StatsChart(QWidget* parent = nullptr);
  void setSeries(const QString& title, const std::deque<RegionSample>& samples);
  QSize sizeHint() const override { return {320, 140}; }

 protected:
  void paintEvent(QPaintEvent* event) override;

 private:
  QString title_;
  std::deque<RegionSample> samples_;
};

}  // namespace rcgui
