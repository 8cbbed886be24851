package command

import "crypto/ed25519"

func ed25519Pub(k *auditKey) ed25519.PublicKey {
	return ed25519.PrivateKey(k.priv).Public().(ed25519.PublicKey)
}
