// Package kg is souk's pure implementation of the Huawei Cloud KooGallery (云商店)
// commerce protocol: the wire types of the SaaS V2 basic interfaces, the
// joint-operation kit sync interfaces, Query Order and usage push; the result
// codes and the typed errors that map to them; and every signature and codec
// the protocol uses:
//
//   - the V2 request signature (SignV2, VerifyV2, SignedURL),
//   - the V1-style Body-Sign response header and V1 authToken,
//   - the usage-push signature header,
//   - the kit x-sign signature (KitSign, VerifyKitSign),
//   - the SHA1PRNG-derived AES-CBC credential codec,
//   - the RSA-OAEP client secret codec and RSA key helpers,
//   - the APIG SDK-HMAC-SHA256 request signature (SignAPIG, VerifyAPIG).
//
// The package does no I/O and has no clock of its own: the current time is
// always a parameter. Where Huawei's documentation is ambiguous the verifiers
// accept every documented reading and report which variant matched, while the
// signers emit the most documented one; docs/protocol.md lists those choices.
package kg
