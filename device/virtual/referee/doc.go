// Package referee holds the tests in which tools keydesk did not write —
// yubikey-manager, yubico-piv-tool, OpenSC with openssl, and libfido2's
// fido2-token/cred/assert — drive virtual YubiKeys through the real PC/SC and
// FIDO stacks. A failure names the tool, its command line, and the exchange
// with the virtual key that broke.
package referee
