package wsserver

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKey(t *testing.T) {
	s := New(HandlerFuncs{}, Options{})
	c := fakeConn(s, 1)
	name := NewKey[string]("name")
	count := NewKey[int]("count")
	other := NewKey[string]("name") // another key, whatever its name

	_, ok := name.Get(c)
	require.False(t, ok)
	name.Set(c, "ann")
	count.Set(c, 3)
	c.SetValue("untyped") // its own slot
	v, ok := name.Get(c)
	require.True(t, ok)
	require.Equal(t, "ann", v)
	n, _ := count.Get(c)
	require.Equal(t, 3, n)
	_, ok = other.Get(c)
	require.False(t, ok)
	require.Equal(t, "untyped", c.Value())

	name.Set(c, "bob")
	v, _ = name.Get(c)
	require.Equal(t, "bob", v)
	name.Delete(c)
	_, ok = name.Get(c)
	require.False(t, ok)
	n, _ = count.Get(c)
	require.Equal(t, 3, n)
	count.Delete(c)
	require.Nil(t, c.vals)
	require.Equal(t, "wsserver.Key(count)", count.String())
	require.PanicsWithValue(t, "wsserver: a zero Key: make keys with NewKey", func() { Key[int]{}.Get(c) })
}
