package queue

import (
	"sync"
	"testing"
)

func TestSmoke(t *testing.T) {
	q := NewSerial("s")
	var got []int
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Add(1)
		q.Async(func() { got = append(got, i); wg.Done() })
	}
	wg.Wait()
	var n int
	q.Sync(func() { n = len(got) })
	for i, v := range got {
		if v != i {
			t.Fatal(i, v)
		}
	}
	if n != 1000 {
		t.Fatal(n)
	}
	c := NewConcurrent("c", WithWidth(3))
	var mu sync.Mutex
	running, maxRunning := 0, 0
	for range 200 {
		wg.Add(1)
		c.Async(func() {
			mu.Lock()
			running++
			maxRunning = max(maxRunning, running)
			mu.Unlock()
			for range 1000 {
			}
			mu.Lock()
			running--
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	t.Log(maxRunning, q.Stats(), c.Stats())
}
