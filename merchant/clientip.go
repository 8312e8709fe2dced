package merchant

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ParseTrustedProxies reads a comma-separated list of addresses and CIDR
// prefixes (--trusted-proxies): the reverse proxies and load balancers in
// front of the merchant, whose X-Forwarded-For is believed.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("trusted proxies: %q is neither an address nor a CIDR prefix", part)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// maxForwarded bounds the X-Forwarded-For entries looked at.
const maxForwarded = 32

// clientIP is the address a request came from: its peer's, or, when the peer
// is a trusted proxy, the nearest address in X-Forwarded-For that is not one
// (entries are appended by each proxy: the client's is the rightmost one no
// trusted proxy added). A malformed entry ends the walk at the last address
// known good.
func clientIP(remoteAddr string, forwarded []string, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	if len(trusted) == 0 || len(forwarded) == 0 {
		return host
	}
	isTrusted := func(s string) bool {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return false
		}
		a = a.Unmap()
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if !isTrusted(host) {
		return host
	}
	var hops []string
	for _, h := range forwarded {
		for e := range strings.SplitSeq(h, ",") {
			hops = append(hops, strings.TrimSpace(e))
		}
	}
	client := host
	for i, seen := len(hops)-1, 0; i >= 0 && seen < maxForwarded; i, seen = i-1, seen+1 {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			// An address with a port ("1.2.3.4:5678", "[::1]:80") is an
			// address all the same; anything else stops the walk.
			ap, perr := netip.ParseAddrPort(hops[i])
			if perr != nil {
				break
			}
			a = ap.Addr()
		}
		client = a.Unmap().String()
		if !isTrusted(client) {
			break
		}
	}
	return client
}

// remoteAddr is the client address recorded for r (audit, logs).
func (m *Merchant) remoteAddr(r *http.Request) string {
	return clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), m.cfg.TrustedProxies)
}
