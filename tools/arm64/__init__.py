"""The arm64 function package under emulation: its interpreter, emulator and lock (`./dev arm64`)."""
