/* A stand-in for an old library that provides a freezefs() that does nothing useful. */
#include <errno.h>

int freezefs(char *mountPoint, unsigned long optionFlags, int timeout);

int freezefs(char *mountPoint, unsigned long optionFlags, int timeout)
{
	(void)mountPoint;
	(void)optionFlags;
	(void)timeout;
	errno = ENOSYS;
	return -1;
}
