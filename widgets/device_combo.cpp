// device_combo.cpp: see device_combo.h.
#include "device_combo.h"

#include <QStandardItemModel>

namespace studio {

DeviceCombo::DeviceCombo(QWidget* parent) : QComboBox(parent) {
    const loftq::CudaStatus& st = loftq::cuda_status();
    const QString gpu = QString::fromStdString(st.device), why = QString::fromStdString(st.why_not);
    addItem(st.available ? tr("Auto (CUDA)") : tr("Auto (CPU)"), int(loftq::ComputeDevice::Auto));
    setItemData(0, st.available ? tr("Runs on %1").arg(gpu) : tr("Runs on the CPU: %1").arg(why), Qt::ToolTipRole);
    addItem(tr("CPU"), int(loftq::ComputeDevice::Cpu));
    setItemData(1, tr("All CPU cores; results identical for any thread count"), Qt::ToolTipRole);
    addItem(st.available ? tr("CUDA: %1").arg(gpu) : tr("CUDA (unavailable)"), int(loftq::ComputeDevice::Cuda));
    setItemData(2, st.available ? gpu : why, Qt::ToolTipRole);
    if (!st.available)
        if (auto* m = qobject_cast<QStandardItemModel*>(model())) m->item(2)->setEnabled(false);
    setToolTip(tr("Where LoftQ runs"));
    setSizeAdjustPolicy(QComboBox::AdjustToContents);
}

loftq::ComputeDevice DeviceCombo::device() const { return loftq::ComputeDevice(currentData().toInt()); }

void DeviceCombo::setDevice(loftq::ComputeDevice d) {
    if (d == loftq::ComputeDevice::Cuda && !loftq::cuda_status().available) d = loftq::ComputeDevice::Auto;
    const int i = findData(int(d));
    setCurrentIndex(i < 0 ? 0 : i);
}

}  // namespace studio
