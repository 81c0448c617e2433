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

// putChunk recycles a chunk; every slot of it is already cleared (pops clear what they take).
func putChunk(c *chunk) {
	c.next = nil
	chunkPool.Put(c)
}

// deque is a FIFO of items in linked chunks: push at the back, pop at the front, and put
// items back at the front (what a drainer does when it stops part-way). It never copies what
// it holds to grow, so a queue that floods costs a chunk per 32 blocks and no large
// allocations, and an empty deque holds no chunk at all.
//
// A deque that holds a single item keeps it inline (one), without a chunk: a queue that goes
// idle after each block (ping-pong, a connection answering one message at a time) takes and
// runs its block without touching the chunk pool. A deque made with keep (the executor's
// root queues, which live as long as the program) keeps its last chunk when it empties.
type deque struct {
	head, tail *chunk
	n          int32
	hi, ti     uint8 // next item to pop in head; next free slot in tail
	keep       bool
	one        item // the only item while head is nil and n is 1
}

func (d *deque) pushBack(it item) {
	if d.tail == nil {
		if d.n == 0 && !d.keep {
			d.one = it
			d.n = 1
			return
		}
		c := getChunk()
		d.head, d.tail, d.hi, d.ti = c, c, 0, 0
		if d.n == 1 { // the inline item moves to the chunk, ahead of this one
			c.items[0] = d.one
			d.one = item{}
			d.ti = 1
		}
	} else if d.ti == chunkSize {
		c := getChunk()
		d.tail.next = c
		d.tail, d.ti = c, 0
	}
	d.tail.items[d.ti] = it
	d.ti++
	d.n++
}

func (d *deque) peek() *item {
	if d.head == nil {
		return &d.one
	}
	return &d.head.items[d.hi]
}

func (d *deque) popFront() item {
	c := d.head
	if c == nil {
		it := d.one
		d.one, d.n = item{}, 0
		return it
	}
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
	if d.tail == nil {
		return d.popFront()
	}
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
		if d.n == 0 {
			d.pushBack(it)
			return
		}
		// One item inline: move it to a chunk, at its end, so that it can be put in front of.
		c := getChunk()
		c.items[chunkSize-1] = d.one
		d.one = item{}
		d.head, d.tail, d.hi, d.ti = c, c, chunkSize-1, chunkSize
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

// release gives the chunks of an empty deque back to the pool (a keep deque keeps one). Its
// slots were cleared as their items were popped.
func (d *deque) release() {
	c := d.head
	if d.keep && c != nil {
		for x := c.next; x != nil; {
			next := x.next
			putChunk(x)
			x = next
		}
		c.next = nil
		d.tail, d.hi, d.ti, d.n = c, 0, 0, 0
		return
	}
	for c != nil {
		next := c.next
		putChunk(c)
		c = next
	}
	*d = deque{}
}
