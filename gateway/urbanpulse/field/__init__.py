"""The field technician's tools: the firmware bundle, provisioning, flashing, board check."""
