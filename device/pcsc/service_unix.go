//go:build unix

package pcsc

// serviceName names the PC/SC resource manager: pcsc-lite's pcscd on Linux
// and the BSDs, Apple's com.apple.ctkpcscd on macOS.
const serviceName = "the smart card service (pcscd)"
