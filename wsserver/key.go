package wsserver

import "fmt"

// A Key is a typed slot of per-connection state: Set stores a T on a connection and Get
// returns it as a T, with no type assertion at the call site. Like Conn.SetValue, whose
// untyped slot it leaves alone, it is touched only from the connection's callbacks and
// blocks on its Queue, which own it: no lock. Make each Key once, as a package variable:
//
//	var session = wsserver.NewKey[*Session]("session")
//
//	func onOpen(c *wsserver.Conn)                      { session.Set(c, &Session{}) }
//	func onMessage(c *wsserver.Conn, m wsserver.Message) { s, _ := session.Get(c); s.handle(m) }
//
// A connection holds a small list of the keys set on it, gone with the connection.
type Key[T any] struct{ id *keyID }

type keyID struct{ name string }

// keyVal is one Key's value on a connection.
type keyVal struct {
	id *keyID
	v  any
}

// NewKey returns a new Key; name only shows in String.
func NewKey[T any](name string) Key[T] { return Key[T]{id: &keyID{name: name}} }

// String returns the key's name.
func (k Key[T]) String() string {
	if k.id == nil {
		return "wsserver.Key(zero)"
	}
	return fmt.Sprintf("wsserver.Key(%s)", k.id.name)
}

func (k Key[T]) check() {
	if k.id == nil {
		panic("wsserver: a zero Key: make keys with NewKey")
	}
}

// Get returns c's value for k, and whether one was set.
func (k Key[T]) Get(c *Conn) (T, bool) {
	k.check()
	if c.vals != nil {
		for _, kv := range *c.vals {
			if kv.id == k.id {
				return kv.v.(T), true
			}
		}
	}
	var zero T
	return zero, false
}

// Set stores v as c's value for k.
func (k Key[T]) Set(c *Conn, v T) {
	k.check()
	if c.vals == nil {
		c.vals = new([]keyVal)
	}
	vals := *c.vals
	for i := range vals {
		if vals[i].id == k.id {
			vals[i].v = v
			return
		}
	}
	*c.vals = append(vals, keyVal{id: k.id, v: v})
}

// Delete removes c's value for k.
func (k Key[T]) Delete(c *Conn) {
	k.check()
	if c.vals == nil {
		return
	}
	vals := *c.vals
	for i, kv := range vals {
		if kv.id == k.id {
			last := len(vals) - 1
			vals[i] = vals[last]
			vals[last] = keyVal{}
			if last == 0 {
				c.vals = nil
			} else {
				*c.vals = vals[:last]
			}
			return
		}
	}
}
