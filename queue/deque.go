package queue

import (
	"sync"
	"unsafe"
)

// chunkSize is the number of items in one chunk of a deque.
const chunkSize = 32

// A chunk stores each item in one 8-byte slot, the item's one pointer, and says in kinds
// what that pointer is: a plain block's func (most items), the queue of a child's drain, or
// an ext. A Guarded's item, which has both a func and an ext, keeps its ext in xs, a side
// array the chunk gets the first time it holds one (and keeps through the pool). Plain
// blocks are what floods a queue: at 8 bytes, a block crosses from the submitter's core to
// the drainer's in a third of the cache lines that a 3-word item takes.
type slotKind uint64

const (
	slotFunc  slotKind = iota // fn (nil in a tombstone: item{})
	slotChild                 // child
	slotExt                   // x, without fn
	slotFuncX                 // fn, with x in xs
)

const (
	slotKindBits = 2
	slotKindMask = 1<<slotKindBits - 1
)

// chunk is a fixed block of a deque's storage; chunks are linked and recycled through a pool.
type chunk struct {
	slots [chunkSize]unsafe.Pointer
	// kinds holds each slot's slotKind, slotKindBits a slot. An empty slot's bits are 0:
	// pushing a plain block writes only its slot.
	kinds uint64
	xs    *[chunkSize]*ext
	next  *chunk
}

var chunkPool = sync.Pool{New: func() any { return new(chunk) }}

func getChunk() *chunk { return chunkPool.Get().(*chunk) }

// putChunk recycles a chunk; every slot of it is already cleared (pops clear what they take).
func putChunk(c *chunk) {
	c.next = nil
	chunkPool.Put(c)
}

// funcPtr and ptrFunc convert between a func value and its one pointer, which is all a func
// value is: both are pointers to the GC, so a slot keeps the func's closure alive.
func funcPtr(fn func()) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&fn)) }

func ptrFunc(p unsafe.Pointer) func() { return *(*func())(unsafe.Pointer(&p)) }

// set stores it in slot i, which is empty.
func (c *chunk) set(i uint8, it item) {
	switch {
	case it.child != nil:
		c.slots[i] = unsafe.Pointer(it.child)
		c.kinds |= uint64(slotChild) << (i * slotKindBits)
	case it.x == nil:
		c.slots[i] = funcPtr(it.fn)
	case it.fn == nil:
		c.slots[i] = unsafe.Pointer(it.x)
		c.kinds |= uint64(slotExt) << (i * slotKindBits)
	default:
		if c.xs == nil {
			c.xs = new([chunkSize]*ext)
		}
		c.slots[i] = funcPtr(it.fn)
		c.xs[i] = it.x
		c.kinds |= uint64(slotFuncX) << (i * slotKindBits)
	}
}

// get returns the item in slot i.
func (c *chunk) get(i uint8) item {
	p := c.slots[i]
	switch slotKind(c.kinds>>(i*slotKindBits)) & slotKindMask {
	case slotFunc:
		return item{fn: ptrFunc(p)}
	case slotChild:
		return item{child: (*Queue)(p)}
	case slotExt:
		return item{x: (*ext)(p)}
	default:
		return item{fn: ptrFunc(p), x: c.xs[i]}
	}
}

// take returns the item in slot i and empties the slot.
func (c *chunk) take(i uint8) item {
	it := c.get(i)
	c.slots[i] = nil
	if k := slotKind(c.kinds>>(i*slotKindBits)) & slotKindMask; k != slotFunc {
		c.kinds &^= slotKindMask << (i * slotKindBits)
		if k == slotFuncX {
			c.xs[i] = nil
		}
	}
	return it
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

// tryPushFunc is pushBack of a plain block (item{fn: fn}) in its common case, room in the
// tail chunk, small enough to inline into the submitters' paths: one 8-byte store; it
// reports false, having done nothing, otherwise.
func (d *deque) tryPushFunc(fn func()) bool {
	if t := d.tail; t != nil && d.ti < chunkSize {
		t.slots[d.ti] = funcPtr(fn)
		d.ti++
		d.n++
		return true
	}
	return false
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
			c.set(0, d.one)
			d.one = item{}
			d.ti = 1
		}
	} else if d.ti == chunkSize {
		c := getChunk()
		d.tail.next = c
		d.tail, d.ti = c, 0
	}
	d.tail.set(d.ti, it)
	d.ti++
	d.n++
}

// peek returns the item popFront would return.
func (d *deque) peek() item {
	if d.head == nil {
		return d.one
	}
	return d.head.get(d.hi)
}

// tryPopFunc is popFront in its common case, a plain block that is neither its chunk's last
// nor the deque's, small enough to inline into the drainer's loop; ok is false, and nothing
// done, otherwise. (A tombstone, which only roots' deques hold, comes back as a nil fn.)
func (d *deque) tryPopFunc() (fn func(), ok bool) {
	if c := d.head; c != nil && d.hi < chunkSize-1 && d.n > 1 && (c.kinds>>(d.hi*slotKindBits))&slotKindMask == 0 {
		fn = ptrFunc(c.slots[d.hi])
		c.slots[d.hi] = nil
		d.hi++
		d.n--
		return fn, true
	}
	return nil, false
}

func (d *deque) popFront() item {
	c := d.head
	if c == nil {
		it := d.one
		d.one, d.n = item{}, 0
		return it
	}
	it := c.take(d.hi)
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
	it := d.tail.take(d.ti)
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
		c.set(chunkSize-1, d.one)
		d.one = item{}
		d.head, d.tail, d.hi, d.ti = c, c, chunkSize-1, chunkSize
	}
	if d.hi == 0 {
		c := getChunk()
		c.next = d.head
		d.head, d.hi = c, chunkSize
	}
	d.hi--
	d.head.set(d.hi, it)
	d.n++
}

// tombstoneChild replaces the first item that drains child with a tombstone (item{}: root
// workers skip it) and reports whether it found one. The inline item is not looked at: a
// deque that holds child drains to move is a root's, which keeps no inline item.
func (d *deque) tombstoneChild(child *Queue) bool {
	for c := d.head; c != nil; c = c.next {
		start, end := uint8(0), uint8(chunkSize)
		if c == d.head {
			start = d.hi
		}
		if c == d.tail {
			end = d.ti
		}
		for i := start; i < end; i++ {
			if c.get(i).child == child {
				c.take(i)
				return true
			}
		}
	}
	return false
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
