/*
 * Tru64 UNIX source compatibility for freezefs.
 *
 * Tru64 code says #include <sys/mount.h> and calls freezefs() with u_long
 * flags. This header is the system's own <sys/mount.h> plus freezefs.h, so
 * such code builds unchanged with
 *
 *     cc ... $(pkg-config --cflags --libs freezefs-compat)
 *
 * (installed, it lives in <prefix>/include/freezefs/compat/sys).
 *
 * Put this directory on the include path only for legacy code: it stands in
 * for <sys/mount.h>, and forwards to the real one with #include_next.
 */
#ifndef FREEZEFS_COMPAT_SYS_MOUNT_H
#define FREEZEFS_COMPAT_SYS_MOUNT_H

#if defined(__GNUC__)
/* #include_next is a GNU extension: keep -pedantic builds of legacy code quiet. */
#pragma GCC system_header
#endif

#include_next <sys/mount.h>
#include <sys/types.h>

#if defined(__GLIBC__) && !defined(__USE_MISC)
/* Tru64's <sys/mount.h> brought u_long; a strict -std=c99 build hides glibc's. */
typedef unsigned long u_long;
#endif

#include <freezefs.h>

#endif /* FREEZEFS_COMPAT_SYS_MOUNT_H */
