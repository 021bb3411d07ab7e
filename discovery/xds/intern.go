package xds

import "sync"

// maxInterned bounds the interner; when full it starts over (strings handed
// out before stay valid, they are just no longer shared with new ones).
const maxInterned = 200_000

// interner shares the strings every proxy sends: resource names and type
// URLs arrive as fresh copies in each proxy's requests, and thousands of
// proxies subscribe to the same few hundred names.
type interner struct {
	mu sync.Mutex
	m  map[string]string
}

func (in *interner) get(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[s]; ok {
		return v
	}
	if in.m == nil || len(in.m) >= maxInterned {
		in.m = make(map[string]string)
	}
	in.m[s] = s
	return s
}
