// Package dispatch has the rest of Grand Central Dispatch's toolbox, built on package queue:
// groups, semaphores, parallel Apply, After and work items, and event sources.
//
// Each GCD call and its name here:
//
//	dispatch_group_create / _async / _enter / _leave     Group (zero value) / Async / Enter / Leave
//	dispatch_group_wait / _notify                        Group.Wait(ctx) / Group.Notify(q, fn)
//	dispatch_semaphore_create / _wait / _signal          NewSemaphore / Wait(ctx) / Signal
//	dispatch_apply                                       Apply(q, n, fn)
//	dispatch_after                                       After(d, q, fn), which returns a *WorkItem
//	dispatch_block_create / _perform                     NewWorkItem / WorkItem.Run
//	dispatch_block_cancel / _testcancel                  WorkItem.Cancel / Cancelled
//	dispatch_block_wait / _notify                        WorkItem.Wait(ctx) / Notify(q, fn)
//	dispatch_source_create(TIMER)                        NewTimer(q, interval, leeway, fn)
//	dispatch_source_create(SIGNAL)                       NewSignal(q, fn, sigs...)
//	dispatch_source_create(DATA_ADD / _OR / _REPLACE)    NewDataAdd / NewDataOr / NewDataReplace
//	dispatch_source_merge_data                           DataSource.Merge
//	dispatch_resume / _suspend / dispatch_source_cancel  Resume / Suspend / Cancel
//	dispatch_source_set_cancel_handler                   SetCancelHandler
//
// Left out, because Go already has them: dispatch_once (sync.Once), dispatch I/O and the
// read/write/vnode/proc sources (package os, net and friends), dispatch_time and dispatch
// walltime (package time), dispatch_main (a Go program's main does not need one), and the
// retain/release calls (the garbage collector). The event handler is the func given to the
// constructor rather than a setter, and a source's data reaches it as the argument.
//
// Waits take a context, as Go's blocking calls do. A wait inside a block holds the block's
// worker for as long as it waits: prefer Notify, which waits without holding anything.
//
// Sources start suspended, as in GCD: set them up, then Resume. Their events are coalesced:
// everything that happens while the handler is pending, running or suspended reaches it in
// its next call, so a burst costs one handler run. A timer is a runtime timer
// (time.AfterFunc) and nothing else, and while it is suspended not even that runs; a data
// source is only memory; a signal source holds the one goroutine that os/signal's channel
// needs, from its first Resume until Cancel, which returns once it has ended. Unlike GCD,
// Cancel runs the cancel handler of a suspended source too, so a source never has to be
// resumed just to be let go. A panic in a handler (with queue.WithPanicHandler) costs only
// that call: the source goes on delivering, and Cancel still runs the cancel handler.
//
// Closed and full queues. Sources, After and Notify submit blocks on behalf of whoever caused
// the event (a Merge, a timer's tick, a signal, the Leave or Run that ended a group or item),
// so none of them panics when the queue turns out to be closed, as Async would: a source whose
// queue has been closed goes quiet (its events are dropped, and its cancel handler, which
// could no longer run, is dropped too, so cancel sources before closing their queue); an After
// item ends as cancelled; a notification is dropped. Each refused block is counted where the
// queue's owner looks: in the queue's Stats().Rejected and its Observer's Rejected hook (the
// tracing package's dispatch.queue.rejected metric), as a TryAsync refusal would be; the
// panic handler is kept for panics. On a full queue (queue.WithLimit) these submissions wait
// for room, as Async does; a source's or an After item's wait ends when it is cancelled, and
// a block of that queue is let in over the limit rather than waiting for itself.
//
// See ExampleGroup, ExampleApply, ExampleAfter, ExampleNewTimer and ExampleNewDataAdd.
package dispatch
