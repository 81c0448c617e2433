package queue

import "sync"

// chunkSize is the number of items in one chunk of a deque.
const chunkSize = 32

// chunk is a fixed block of a deque's storage; chunks are linked and recycled through a pool.
type chunk struct {
	items [chunkSize]item
	next  *chunk
}

var chunkPool = sync.Pool{New: func() any { return new(chunk) }}

func getChunk() *chunk { return chunkPool.Get().(*chunk) }

func putChunk(c *chunk) {
	c.next = nil
	chunkPool.Put(c)
}

// deque is a FIFO of items in linked chunks: push at the back, pop at the front, and put
// items back at the front (what a drainer does when it stops part-way). It never copies what
// it holds to grow, so a queue that floods costs a chunk per 32 blocks and no large
// allocations, and an empty deque holds no chunk at all.
type deque struct {
	head, tail *chunk
	hi, ti     int // next item to pop in head; next free slot in tail
	n          int
}

func (d *deque) pushBack(it item) {
	if d.tail == nil {
		c := getChunk()
		d.head, d.tail, d.hi, d.ti = c, c, 0, 0
	} else if d.ti == chunkSize {
		c := getChunk()
		d.tail.next = c
		d.tail, d.ti = c, 0
	}
	d.tail.items[d.ti] = it
	d.ti++
	d.n++
}

func (d *deque) peek() *item { return &d.head.items[d.hi] }

func (d *deque) popFront() item {
	c := d.head
	it := c.items[d.hi]
	c.items[d.hi] = item{}
	d.hi++
	d.n--
	if d.n == 0 {
		d.release()
	} else if d.hi == chunkSize {
		d.head, d.hi = c.next, 0
		putChunk(c)
	}
	return it
}

func (d *deque) popBack() item {
	d.ti--
	it := d.tail.items[d.ti]
	d.tail.items[d.ti] = item{}
	d.n--
	if d.n == 0 {
		d.release()
	} else if d.ti == 0 {
		// Walk to the chunk before the tail; popBack is rare (putting a batch back).
		p := d.head
		for p.next != d.tail {
			p = p.next
		}
		putChunk(d.tail)
		p.next = nil
		d.tail, d.ti = p, chunkSize
	}
	return it
}

func (d *deque) pushFrontOne(it item) {
	if d.head == nil {
		d.pushBack(it)
		return
	}
	if d.hi == 0 {
		c := getChunk()
		c.next = d.head
		d.head, d.hi = c, chunkSize
	}
	d.hi--
	d.head.items[d.hi] = it
	d.n++
}

// release returns the chunks of an empty deque to the pool.
func (d *deque) release() {
	for c := d.head; c != nil; {
		next := c.next
		clear(c.items[:])
		putChunk(c)
		c = next
	}
	*d = deque{}
}
