/*
 * libfido2, loaded on first use. Every libfido2 function fidoc and
 * github.com/keys-pub/go-libfido2 call is defined here (lazy_linux.h, from
 * genlazy.go) as a forwarder to the libfido2.so.1 this file opens the first
 * time one is called. The linker resolves those calls here, so keydesk's
 * programs do not list libfido2 (and through it libcrypto, libcbor, libudev
 * and libz) as needed libraries: a command that never talks FIDO does not
 * pay to load and relocate them at start (docs/cli.md, "Start-up").
 *
 * When libfido2.so.1 cannot be opened, kd_lazy_load returns NULL with the
 * loader's reason in kd_lazy_error, and every forwarder returns its "absent"
 * value (FIDO_ERR_INTERNAL, NULL or 0) without doing anything; fidoc.Load
 * reports the reason before any of them runs.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include <fido.h>
#include <fido/bio.h>
#include <fido/config.h>
#include <fido/credman.h>

#include "lazy_linux.h"

/* The soname Debian's libfido2-1 (1.12) and later releases install. */
#define KD_LIBFIDO2 "libfido2.so.1"

static pthread_once_t kd_once = PTHREAD_ONCE_INIT;
static void *kd_lib;
static char kd_err[512];
static int kd_init_flags;

#define KD_PTR(ret, name, absent, params, args) static ret(*kd_p_##name) params;
#define KD_VPTR(name, params, args) static void(*kd_p_##name) params;
KD_LAZY_ALL(KD_PTR, KD_VPTR)

static void kd_load_once(void) {
	void *h = dlopen(KD_LIBFIDO2, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(kd_err, sizeof kd_err, "%s", e != NULL ? e : "cannot open " KD_LIBFIDO2);
		return;
	}
#define KD_RESOLVE(ret, name, absent, params, args) kd_p_##name = (ret(*) params)dlsym(h, #name);
#define KD_VRESOLVE(name, params, args) kd_p_##name = (void(*) params)dlsym(h, #name);
	KD_LAZY_ALL(KD_RESOLVE, KD_VRESOLVE)
	void (*init)(int) = (void (*)(int))dlsym(h, "fido_init");
	if (init != NULL)
		init(kd_init_flags);
	kd_lib = h;
}

/* kd_lazy_load opens libfido2 once; NULL when it cannot be opened. */
void *kd_lazy_load(void) {
	pthread_once(&kd_once, kd_load_once);
	return kd_lib;
}

/* kd_lazy_error is why kd_lazy_load returned NULL. */
const char *kd_lazy_error(void) {
	kd_lazy_load();
	return kd_err;
}

/* kd_lazy_sym finds a libfido2 function by name (late.h); NULL when
 * libfido2 or the function is absent. */
void *kd_lazy_sym(const char *name) {
	void *h = kd_lazy_load();
	return h != NULL ? dlsym(h, name) : NULL;
}

/* fido_init is called from package initialisers (go-libfido2's and
 * fidoc's), at every program's start: it only records the flags, which
 * libfido2 receives when it is loaded. */
void fido_init(int flags) {
	kd_init_flags |= flags;
	if (kd_lib != NULL) {
		void (*init)(int) = (void (*)(int))dlsym(kd_lib, "fido_init");
		if (init != NULL)
			init(kd_init_flags);
	}
}

#define KD_WRAP(ret, name, absent, params, args) \
	ret name params { \
		kd_lazy_load(); \
		return kd_p_##name != NULL ? kd_p_##name args : absent; \
	}
#define KD_VWRAP(name, params, args) \
	void name params { \
		kd_lazy_load(); \
		if (kd_p_##name != NULL) \
			kd_p_##name args; \
	}
KD_LAZY_ALL(KD_WRAP, KD_VWRAP)
