/*
 * A stand-in bcryptprimitives.dll for Wine, built by packaging/cross-check.sh.
 *
 * Go 1.26's runtime on Windows reads random bytes through ProcessPrng, which
 * Windows 10 and later export from bcryptprimitives.dll; Debian 12's Wine 8.0
 * has no such DLL, so Go programs do not start under it. This one exports
 * ProcessPrng and fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036). It is used only inside the check's Wine prefix and is
 * never shipped.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
