package queue

// deque is a growable ring buffer of items: push at the back, pop at the front, and put a
// run of items back at the front (what a drainer does when it stops part-way through a batch).
type deque struct {
	buf  []item
	head int
	n    int
}

func (d *deque) len() int { return d.n }

func (d *deque) grow(need int) {
	c := 2 * len(d.buf)
	if c < 4 {
		c = 4
	}
	for c < need {
		c *= 2
	}
	nb := make([]item, c)
	if d.n > 0 {
		if d.head+d.n <= len(d.buf) {
			copy(nb, d.buf[d.head:d.head+d.n])
		} else {
			k := copy(nb, d.buf[d.head:])
			copy(nb[k:], d.buf[:d.n-k])
		}
	}
	d.buf, d.head = nb, 0
}

func (d *deque) pushBack(it item) {
	if d.n == len(d.buf) {
		d.grow(d.n + 1)
	}
	i := d.head + d.n
	if i >= len(d.buf) {
		i -= len(d.buf)
	}
	d.buf[i] = it
	d.n++
}

func (d *deque) peek() *item { return &d.buf[d.head] }

func (d *deque) popFront() item {
	it := d.buf[d.head]
	d.buf[d.head] = item{}
	d.head++
	if d.head == len(d.buf) {
		d.head = 0
	}
	d.n--
	return it
}

// popInto moves up to len(dst) items from the front into dst and returns how many.
func (d *deque) popInto(dst []item) int {
	k := 0
	for k < len(dst) && d.n > 0 {
		dst[k] = d.popFront()
		k++
	}
	return k
}

// pushFront puts items back at the front, keeping their order.
func (d *deque) pushFront(items []item) {
	if len(items) == 0 {
		return
	}
	if d.n+len(items) > len(d.buf) {
		d.grow(d.n + len(items))
	}
	for i := len(items) - 1; i >= 0; i-- {
		d.head--
		if d.head < 0 {
			d.head = len(d.buf) - 1
		}
		d.buf[d.head] = items[i]
		d.n++
	}
}

// shrink drops a large buffer once the deque is empty, so an idle queue costs bytes.
func (d *deque) shrink() {
	if d.n == 0 && len(d.buf) > 16 {
		d.buf, d.head = nil, 0
	}
}
