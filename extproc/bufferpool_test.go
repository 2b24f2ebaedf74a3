package extproc

import "testing"

func TestBufferPoolSizes(t *testing.T) {
	for _, tc := range []struct{ size, cap int }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {40_000, 65536}, {1 << 20, 1 << 20}, {16 << 20, 16 << 20}, {16<<20 + 1, 16<<20 + 1},
	} {
		b := BufferPool.Get(tc.size)
		if len(*b) != tc.size || cap(*b) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want cap %d", tc.size, len(*b), cap(*b), tc.cap)
		}
		BufferPool.Put(b)
	}
}

// A buffer given back is handed out again, at the length asked for, without
// allocating.
func TestBufferPoolReuses(t *testing.T) {
	b := BufferPool.Get(3000)
	BufferPool.Put(b)
	if n := testing.AllocsPerRun(100, func() { BufferPool.Put(BufferPool.Get(3000)) }); n != 0 {
		t.Errorf("%v allocations per Get/Put", n)
	}
	// A buffer of a foreign capacity is not kept: it would hand out less
	// than a tier promises.
	odd := make([]byte, 300)
	BufferPool.Put(&odd)
	if got := BufferPool.Get(300); cap(*got) != 512 {
		t.Errorf("Get(300) returned a buffer of capacity %d", cap(*got))
	}
}
