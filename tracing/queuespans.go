package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dispatchkit/dispatchkit/queue"
)

// QueueCreated records q among the live queues (weakly: the Observer never keeps a queue
// alive) for the queue size metric.
func (o *Observer) QueueCreated(q *queue.Queue) {
	if o == nil {
		return
	}
	o.live.add(q)
	if o.insp != nil {
		o.insp.QueueCreated(q)
	}
}

// QueueClosed forgets q.
func (o *Observer) QueueClosed(q *queue.Queue) {
	if o == nil {
		return
	}
	o.live.remove(q)
	if o.insp != nil {
		o.insp.QueueClosed(q)
	}
}

// Enqueued keeps the submitter's context with the block; with WithProducerSpans it also
// records a PRODUCER span for the enqueue.
func (o *Observer) Enqueued(q *queue.Queue, ctx context.Context, kind queue.BlockKind) context.Context {
	if o == nil {
		return ctx
	}
	if o.insp != nil {
		ctx = o.insp.Enqueued(q, ctx, kind)
	}
	if o.spans && !trace.SpanContextFromContext(ctx).IsValid() {
		// An AsyncContext or SyncContext whose ctx carries no span (a deadline, say), made
		// inside a traced block, stays in the block's trace.
		if sc := trace.SpanContextFromContext(queue.CurrentContext()); sc.IsValid() {
			ctx = trace.ContextWithSpanContext(ctx, sc)
		}
	}
	if !o.produce || !o.spans {
		return ctx
	}
	a := o.labels.get(q)
	ctx, span := o.tracer.Start(orBackground(ctx), a.send, a.produce...)
	span.End()
	return ctx
}

// Started starts the block's CONSUMER span "process <label>" from the context captured at
// enqueue (its child, or with WithNewRoots a new root linked to it) and hands it to the block.
func (o *Observer) Started(q *queue.Queue, ctx context.Context, b queue.BlockInfo) context.Context {
	if o == nil {
		return ctx
	}
	if o.insp != nil {
		ctx = o.insp.Started(q, ctx, b)
	}
	if !o.spans {
		return ctx
	}
	if st := ownedBy(ctx, q); st != nil && st.adopted.CompareAndSwap(false, true) {
		// The server's span for this block (a message's receive, a connection's close):
		// the block's span is that one.
		if st.span.IsRecording() {
			st.span.SetAttributes(attribute.Float64(keyWait, b.Wait.Seconds()))
		}
		return ctx
	}
	if !o.linked && unsampledParent(ctx) {
		return ctx
	}
	a := o.labels.get(q)
	opts := a.start[kindIndex(b.Kind)]
	if key := q.Key(); key != "" {
		opts = append(opts[:len(opts):len(opts)], keyAttrs(a.label, key))
	}
	var span trace.Span
	if sc := trace.SpanContextFromContext(ctx); o.linked && sc.IsValid() {
		ctx, span = o.tracer.Start(ctx, a.name, append(opts[:len(opts):len(opts)],
			trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: sc}))...)
	} else {
		ctx, span = o.tracer.Start(ctx, a.name, opts...)
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.Float64(keyWait, b.Wait.Seconds()))
		if b.Site != "" {
			span.SetAttributes(attribute.String(keySite, b.Site))
		}
	}
	return ctx
}

// Finished ends the block's span (status Error and error.type on a panic) and records its
// wait and run times.
func (o *Observer) Finished(q *queue.Queue, ctx context.Context, b queue.BlockInfo) {
	if o == nil {
		return
	}
	if o.insp != nil {
		o.insp.Finished(q, ctx, b)
	}
	a := o.labels.get(q)
	k := kindIndex(b.Kind)
	if o.m.wait.Enabled(ctx) {
		o.m.wait.Record(ctx, b.Wait.Seconds(), a.kinds[k]...)
	}
	if o.m.run.Enabled(ctx) {
		o.m.run.Record(ctx, b.Run.Seconds(), a.kinds[k]...)
	}
	if !o.spans {
		return
	}
	span := trace.SpanFromContext(ctx)
	if st := ownedBy(ctx, q); st != nil && st.adopted.Load() {
		span = st.span
	}
	if b.Panic != nil && span.IsRecording() {
		span.SetStatus(codes.Error, panicMessage(b.Panic))
		span.SetAttributes(attribute.String(keyErrorType, fmt.Sprintf("%T", b.Panic)))
	}
	span.End()
}

// Rejected counts a block TryAsync refused.
func (o *Observer) Rejected(q *queue.Queue, err error) {
	if o == nil {
		return
	}
	if o.insp != nil {
		o.insp.Rejected(q, err)
	}
	ctx := context.Background()
	if !o.m.rejected.Enabled(ctx) {
		return
	}
	why := "full"
	if err == queue.ErrClosed {
		why = "closed"
	}
	a := o.labels.get(q)
	o.m.rejected.Add(ctx, 1, a.rejectOpts(why)...)
}

// keyAttrs are the attributes of a queue with a key (queue.WithKey): the key is the
// destination's name and the label its template, as the messaging conventions have it, and a
// connection's or a room's queue names it as the server's spans do.
func keyAttrs(label, key string) trace.SpanStartEventOption {
	kvs := []attribute.KeyValue{
		attribute.String(keyDestination, key),
		attribute.String(keyTemplate, label),
		attribute.String(keyQueueKey, key),
	}
	switch label {
	case roleConn:
		kvs = append(kvs, attribute.String(keyConnID, key))
	case roleRoom:
		kvs = append(kvs, attribute.String(keyRoom, key))
	}
	return trace.WithAttributes(kvs...)
}

// panicMessage is a span status description for a recovered panic value, kept short.
func panicMessage(v any) string {
	s := fmt.Sprintf("panic: %v", v)
	if len(s) > 256 {
		s = s[:256]
	}
	return s
}

// unsampledParent reports whether ctx's span is an unsampled one that records nothing. The
// SDK's default sampler (ParentBased, and every parentbased_* of OTEL_TRACES_SAMPLER) samples
// none of its children, so starting one would cost an ID, a sampling decision and a span
// object for nothing: at 1% sampling that was most of a message's tracing cost. A sampler
// that samples children of unsampled parents is not served (none of the SDK's does that
// unless configured to).
func unsampledParent(ctx context.Context) bool {
	span := trace.SpanFromContext(ctx)
	sc := span.SpanContext()
	return sc.IsValid() && !sc.IsSampled() && !span.IsRecording()
}
