package goid

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGIsStablePerGoroutineAndDistinctAcrossThem(t *testing.T) {
	me := G()
	require.NotZero(t, me)
	require.Equal(t, me, G())

	const n = 16
	ids := make(chan uintptr, n)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			ids <- G()
			<-release // stay alive so no two live goroutines can share a value
		})
	}
	seen := map[uintptr]bool{me: true}
	for range n {
		id := <-ids
		require.False(t, seen[id], "two live goroutines share id %#x", id)
		seen[id] = true
	}
	close(release)
	wg.Wait()
}

func BenchmarkG(b *testing.B) {
	for b.Loop() {
		G()
	}
}
