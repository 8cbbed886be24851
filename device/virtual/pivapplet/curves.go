package pivapplet

import "crypto/elliptic"

func ecdsaCurve(alg byte) elliptic.Curve {
	if alg == AlgECCP384 {
		return elliptic.P384()
	}
	return elliptic.P256()
}
