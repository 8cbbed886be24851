/*
 * The libfido2 functions keydesk uses that are newer than some libfido2
 * builds it meets: the one github.com/keys-pub/go-libfido2 bundles for
 * Windows predates authenticatorConfig (fido/config.h, libfido2 1.7) and
 * lacks thirteen of them. Each is called through kd_NAME. Where libfido2 is
 * linked as a DLL (Windows) kd_NAME looks fido_NAME up in the loaded DLL at
 * run time (GetProcAddress), so a newer libfido2.dll beside keydesk.exe
 * lights the feature up; when it is absent an operation returns
 * KD_ERR_MISSING and a getter its "unknown" value. On Linux, where libfido2
 * is opened on first use (lazy_linux.c), kd_NAME looks fido_NAME up in it
 * the same way. Elsewhere kd_NAME is fido_NAME.
 *
 * KD_LATE lists them: return type, name without fido_, value when absent,
 * parameters, arguments.
 */
#ifndef KD_LATE_H
#define KD_LATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* CTAP 2.1 §8.2.1's CTAP2_ERR_UNAUTHORIZED_PERMISSION, which older
 * fido/err.h lack. */
#ifndef FIDO_ERR_UNAUTHORIZED_PERM
#define FIDO_ERR_UNAUTHORIZED_PERM 0x40
#endif

/* Not a libfido2 code (those run from -17 to 0x7f). */
#define KD_ERR_MISSING (-1000)

#define KD_LATE(X) \
	X(int, dev_set_pin_minlen, KD_ERR_MISSING, (fido_dev_t *d, size_t n, const char *pin), (d, n, pin)) \
	X(int, dev_force_pin_change, KD_ERR_MISSING, (fido_dev_t *d, const char *pin), (d, pin)) \
	X(int, dev_enable_entattest, KD_ERR_MISSING, (fido_dev_t *d, const char *pin), (d, pin)) \
	X(int, dev_set_timeout, FIDO_OK, (fido_dev_t *d, int ms), (d, ms)) \
	X(bool, dev_has_pin, false, (const fido_dev_t *d), (d)) \
	X(uint64_t, cbor_info_minpinlen, 0, (const fido_cbor_info_t *ci), (ci)) \
	X(bool, cbor_info_new_pin_required, false, (const fido_cbor_info_t *ci), (ci)) \
	X(int64_t, cbor_info_rk_remaining, -1, (const fido_cbor_info_t *ci), (ci)) \
	X(uint64_t, cbor_info_maxcredcntlst, 0, (const fido_cbor_info_t *ci), (ci)) \
	X(const unsigned char *, cred_authdata_raw_ptr, NULL, (const fido_cred_t *c), (c)) \
	X(size_t, cred_authdata_raw_len, 0, (const fido_cred_t *c), (c)) \
	X(const unsigned char *, cred_attstmt_ptr, NULL, (const fido_cred_t *c), (c)) \
	X(size_t, cred_attstmt_len, 0, (const fido_cred_t *c), (c))

#ifdef _WIN32
#include <windows.h>

/* kd_sym finds fido_NAME in the libfido2 DLL this process loaded. */
static void *kd_sym(const char *name) {
	static const char *const dlls[] = {"fido2.dll", "libfido2.dll", "libfido2-1.dll"};
	for (size_t i = 0; i < sizeof dlls / sizeof dlls[0]; i++) {
		HMODULE h = GetModuleHandleA(dlls[i]);
		if (h != NULL)
			return (void *)GetProcAddress(h, name);
	}
	return NULL;
}
#define KD_LOOKUP 1
#elif defined(__linux__)
/* kd_lazy_sym finds fido_NAME in the libfido2 loaded on first use
 * (lazy_linux.c). */
void *kd_lazy_sym(const char *name);
#define kd_sym kd_lazy_sym
#define KD_LOOKUP 1
#endif

#ifdef KD_LOOKUP
#define KD_DEFINE(ret, name, absent, params, args) \
	static ret kd_##name params { \
		ret (*f) params = (ret (*) params)kd_sym("fido_" #name); \
		return f != NULL ? f args : absent; \
	}
#else
#include <fido/config.h>

#define KD_DEFINE(ret, name, absent, params, args) \
	static ret kd_##name params { return fido_##name args; }
#endif

KD_LATE(KD_DEFINE)

/* kd_missing writes the names of the functions the present libfido2 lacks,
 * comma-separated, into buf (size n). */
static void kd_missing(char *buf, size_t n) {
	buf[0] = 0;
#ifdef KD_LOOKUP
	size_t used = 0;
#define KD_CHECK(ret, name, absent, params, args) \
	if (kd_sym("fido_" #name) == NULL && used + sizeof("fido_" #name) + 1 < n) { \
		if (used > 0) buf[used++] = ','; \
		memcpy(buf + used, "fido_" #name, sizeof("fido_" #name)); \
		used += sizeof("fido_" #name) - 1; \
	}
	KD_LATE(KD_CHECK)
#undef KD_CHECK
#endif
}

#endif
