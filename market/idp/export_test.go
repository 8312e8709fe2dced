package idp

// SetVerifyPassword replaces the password check of p (tests only).
func SetVerifyPassword(p *IdP, f func(hash, password string) error) { p.verifyPassword = f }
