// device_combo.h: the device chooser of runs and fine-tunes — Auto, CPU, CUDA — over the
// engine's loftq::cuda_status() (device/compute_device.h). CUDA is listed in every build: with
// the GPU's name when usable, disabled with the reason as its tooltip otherwise, so the user sees
// why a run goes to the CPU. Auto (the default) says where it will run.
#pragma once
#include <QComboBox>

#include "device/compute_device.h"

namespace studio {

class DeviceCombo : public QComboBox {
    Q_OBJECT
public:
    explicit DeviceCombo(QWidget* parent = nullptr);
    loftq::ComputeDevice device() const;
    // Selects d; a CUDA choice without a usable GPU falls back to Auto (e.g. a saved setting
    // from another machine).
    void setDevice(loftq::ComputeDevice d);
};

}  // namespace studio
