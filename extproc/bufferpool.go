package extproc

import (
	"math/bits"
	"sync"
)

// BufferPool is the pool gRPC reads Envoy's messages into and encodes the
// answers in (serve makes it gRPC's default pool: the proto codec takes
// its buffers from that one, whatever the server's). gRPC's default pool clears a buffer's
// whole capacity each time it hands one out, and its tiers jump from 32 KiB
// to 1 MiB: on an SSE stream, clearing was a seventh of the sidecar's CPU.
// This pool keeps one tier per power of two from 256 B to 16 MiB (the largest
// message a buffered body makes) and does not clear: gRPC reads exactly the
// bytes of a frame or message into the buffer it gets, and nothing reads past
// them — the same reasoning as gRPC's own internal "dirty" pools.
var BufferPool = newBufferPool()

const (
	minPoolShift = 8  // 256 B
	maxPoolShift = 24 // 16 MiB
)

type bufferPool struct {
	tiers [maxPoolShift - minPoolShift + 1]sync.Pool
}

func newBufferPool() *bufferPool { return &bufferPool{} }

// tier is the index of the smallest tier holding size bytes, or -1 when size
// is beyond the largest.
func tier(size int) int {
	if size <= 1<<minPoolShift {
		return 0
	}
	shift := bits.Len(uint(size - 1)) // the power of two ≥ size
	if shift > maxPoolShift {
		return -1
	}
	return shift - minPoolShift
}

// Get returns a buffer of length size, its contents unspecified.
func (p *bufferPool) Get(size int) *[]byte {
	t := tier(size)
	if t < 0 {
		b := make([]byte, size)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:size]
		return b
	}
	b := make([]byte, size, 1<<(t+minPoolShift))
	return &b
}

// Put returns a buffer that Get gave out.
func (p *bufferPool) Put(b *[]byte) {
	c := cap(*b)
	t := tier(c)
	if t < 0 || c != 1<<(t+minPoolShift) {
		return // not one of ours (or too large to keep)
	}
	p.tiers[t].Put(b)
}
