"""What init learns from the reference: schema, binning, task, label and loss models, OOD model."""
