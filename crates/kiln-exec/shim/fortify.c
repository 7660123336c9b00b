/* Debian's libseccomp.a is built against glibc with _FORTIFY_SOURCE, so it
 * calls glibc's checked fprintf. musl has no such symbol; a static musl
 * kiln (images/kiln) links it through this shim. */
#include <stdarg.h>
#include <stdio.h>

int __fprintf_chk(FILE *stream, int flag, const char *format, ...)
{
	(void)flag;
	va_list ap;
	va_start(ap, format);
	int n = vfprintf(stream, format, ap);
	va_end(ap);
	return n;
}
