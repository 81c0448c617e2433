package natsbroker

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// System is the messaging system natsbroker reports to a wsserver.RemoteObserver (the
// tracing package's receive span has it as messaging.system).
const System = "nats"

// carrier is a propagation.TextMapCarrier over a frame's context fields: key, value, key,
// value, in the order the propagator set them.
type carrier []string

// Get returns the value of key, or "".
func (c *carrier) Get(key string) string {
	for i := 0; i+1 < len(*c); i += 2 {
		if (*c)[i] == key {
			return (*c)[i+1]
		}
	}
	return ""
}

// Set sets key to value.
func (c *carrier) Set(key, value string) {
	for i := 0; i+1 < len(*c); i += 2 {
		if (*c)[i] == key {
			(*c)[i+1] = value
			return
		}
	}
	*c = append(*c, key, value)
}

// Keys returns the keys set.
func (c *carrier) Keys() []string {
	keys := make([]string, 0, len(*c)/2)
	for i := 0; i < len(*c); i += 2 {
		keys = append(keys, (*c)[i])
	}
	return keys
}

var _ propagation.TextMapCarrier = (*carrier)(nil)

// propagator returns Options.Propagator, or the program's global one now (so that one set
// after Connect, by otelsetup.Setup say, is used).
func (b *Broker) propagator() propagation.TextMapPropagator {
	if p := b.opts.Propagator; p != nil {
		return p
	}
	return otel.GetTextMapPropagator()
}

// inject appends to c what the propagator carries of ctx (nothing when no propagator is
// installed, or ctx carries no trace).
func (b *Broker) inject(ctx context.Context, c *carrier) {
	b.propagator().Inject(ctx, c)
}

// extract returns the context a frame's fields carried, under context.Background.
func (b *Broker) extract(fields []byte) context.Context {
	ctx := context.Background()
	if len(fields) == 0 {
		return ctx
	}
	var c carrier
	_ = eachField(fields, func(k, v []byte) { c = append(c, string(k), string(v)) })
	return b.propagator().Extract(ctx, &c)
}
