/* tsan_glib.h: ThreadSanitizer suppressions for the GLib stack, for test binaries that
 * run GLib main loops on several threads (include from exactly one file per binary).
 *
 * GLib >= 2.68 implements GMutex/GCond/GRecMutex with raw futexes, which TSan cannot
 * see, so GLib's own hand-overs (quarks, type registration, main-context sources,
 * libnice's agent lock) show up as races. Our code hands data between threads only
 * through pthread mutexes (the SFU mailbox, the directory, the tests' queues), which
 * TSan does see, so suppressing reports that involve these libraries hides nothing of
 * ours. The same list is in tests/sfu-tsan.supp for parleyd. */
#ifndef PL_TEST_TSAN_GLIB_H
#define PL_TEST_TSAN_GLIB_H

#if defined(__SANITIZE_THREAD__)
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:libglib-2.0.so\n"
           "race:libgobject-2.0.so\n"
           "race:libgio-2.0.so\n"
           "race:libnice.so\n";
}
#endif

#endif
