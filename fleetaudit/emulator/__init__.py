"""A local emulator of the platform's OTA API, strict like the real one."""
