#ifndef LIBFUZZER_DRIVER_H
#define LIBFUZZER_DRIVER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's own driver (what its main() runs), linked in by -sanitize=fuzzer.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

/// LeakSanitizer's check of the whole heap now, without ending the process: nonzero when it
/// found (and printed) a leak. From <sanitizer/lsan_interface.h>; -sanitize=address links it.
int __lsan_do_recoverable_leak_check(void);

#endif
