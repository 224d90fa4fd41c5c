package eventbus

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// ErrPublisherClosed is the error of a [Publisher.Publish] made after [Publisher.Close].
var ErrPublisherClosed = errors.New("eventbus: publisher closed")

type publishStream = grpc.BidiStreamingClient[eventbusv1.PublishStreamRequest, eventbusv1.PublishStreamResponse]

// publishOutcome is the answer to one message of the stream.
type publishOutcome struct {
	results []*eventbusv1.PublishResult
	err     error
}

// Publisher publishes over one PublishStream call: each [Publisher.Publish] is one message of
// the stream, so many publishes can be in flight on one call instead of a call each. Open one
// with [Client.Publisher]. Safe for concurrent use.
//
// The server sequences the messages in the order they were sent and answers each as a Publish
// call would: the error of one message fails only that Publish. When the stream itself ends
// (the server shuts down with UNAVAILABLE, the connection breaks, the context given to
// [Client.Publisher] ends), every Publish still waiting and every later one fails with the
// stream's status. There is no reconnect: open a new Publisher and publish the same built
// events again, which is safe (a stored event id is answered as a duplicate).
//
// Hazard: an event the client cannot encode (a string field that is not UTF-8, which
// [NewEvent]'s builder refuses) ends the whole stream with INTERNAL, as gRPC aborts a stream
// whose message fails to marshal.
type Publisher struct {
	stream   publishStream
	requests chan *eventbusv1.PublishStreamRequest // to the sender goroutine
	closing  chan struct{}                         // closed by Close
	stopped  chan struct{}                         // closed when the sender goroutine returns
	done     chan struct{}                         // closed when the stream has ended
	closeOne sync.Once

	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan<- publishOutcome
	ended   error // the stream's status, once it has ended
}

// Publisher opens a PublishStream call and returns the [Publisher] that sends on it. The
// stream lives until ctx ends, [Publisher.Close] is called, the server ends it, or the client
// is closed; its two goroutines end with it.
func (c *Client) Publisher(ctx context.Context, opts ...grpc.CallOption) (*Publisher, error) {
	stream, err := c.PublishStream(ctx, opts...)
	if err != nil {
		return nil, err
	}
	p := &Publisher{
		stream:   stream,
		requests: make(chan *eventbusv1.PublishStreamRequest),
		closing:  make(chan struct{}),
		stopped:  make(chan struct{}),
		done:     make(chan struct{}),
		waiting:  make(map[uint64]chan<- publishOutcome),
	}
	go p.send()
	go p.receive()
	return p, nil
}

// Publish publishes events to namespace, as [Client.Publish] does, as one message of the
// stream, and returns one result per event, in order. ctx bounds the wait for the answer: when
// it ends first, Publish returns its CANCELED or DEADLINE_EXCEEDED status and the events may or
// may not be stored (publishing them again is safe).
//
// The error of the message is a status error with the code and message a Publish call would
// have got; for INVALID_ARGUMENT its details hold an errdetails.BadRequest naming the fields at
// fault (status.Convert(err).Details()). After the stream ended, the error is the stream's
// status; after [Publisher.Close], [ErrPublisherClosed].
func (p *Publisher) Publish(ctx context.Context, namespace string, events ...*eventbusv1.CloudEvent) ([]*eventbusv1.PublishResult, error) {
	answer := make(chan publishOutcome, 1)
	id, err := p.await(answer)
	if err != nil {
		return nil, err
	}
	req := &eventbusv1.PublishStreamRequest{
		Id:      id,
		Publish: &eventbusv1.PublishRequest{Namespace: namespace, Events: events},
	}
	select {
	case p.requests <- req:
	case <-p.stopped:
		if p.closed() {
			p.forget(id)
			return nil, ErrPublisherClosed
		}
		// The stream is over (a send failed, or it ended): receive answers with its status.
	case <-ctx.Done():
		p.forget(id)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	select {
	case outcome := <-answer:
		return outcome.results, outcome.err
	case <-ctx.Done():
		p.forget(id)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// Close half-closes the stream: the server answers the messages sent before and then ends the
// call, which ends the Publisher's goroutines. Publishes already sent get their answers; later
// ones fail with [ErrPublisherClosed]. Close does not wait for the answers, may be called more
// than once and concurrently with Publish, and always returns nil.
func (p *Publisher) Close() error {
	p.closeOne.Do(func() { close(p.closing) })
	return nil
}

func (p *Publisher) closed() bool {
	select {
	case <-p.closing:
		return true
	default:
		return false
	}
}

// await gives the next message id to answer, or returns why no message can be sent.
func (p *Publisher) await(answer chan<- publishOutcome) (uint64, error) {
	if p.closed() {
		return 0, ErrPublisherClosed
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended != nil {
		return 0, p.ended
	}
	id := p.nextID
	p.nextID++
	p.waiting[id] = answer
	return id, nil
}

// forget drops the answer of message id, which nobody waits for any more.
func (p *Publisher) forget(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.waiting, id)
}

// send is the only goroutine that sends on the stream (gRPC allows one at a time), until
// Close, a failed send or the end of the stream.
func (p *Publisher) send() {
	defer close(p.stopped)
	for {
		select {
		case req := <-p.requests:
			// On error the stream is aborted; receive gets its status from Recv.
			if err := p.stream.Send(req); err != nil {
				return
			}
		case <-p.closing:
			_ = p.stream.CloseSend()
			return
		case <-p.done:
			return
		}
	}
}

// receive hands each answer of the stream to its Publish; when the stream ends, it fails the
// publishes still waiting with the stream's status.
func (p *Publisher) receive() {
	for {
		resp, err := p.stream.Recv()
		if err != nil {
			p.end(err)
			return
		}
		p.mu.Lock()
		answer, ok := p.waiting[resp.GetId()]
		delete(p.waiting, resp.GetId())
		p.mu.Unlock()
		if ok {
			answer <- messageOutcome(resp)
		}
	}
}

func (p *Publisher) end(err error) {
	if errors.Is(err, io.EOF) {
		err = status.Error(codes.Unavailable, "eventbus: the publish stream ended")
	}
	p.mu.Lock()
	p.ended = err
	waiting := p.waiting
	p.waiting = nil
	p.mu.Unlock()
	close(p.done)
	for _, answer := range waiting {
		answer <- publishOutcome{err: err}
	}
}

// messageOutcome is what the Publish of a message returns for its answer.
func messageOutcome(resp *eventbusv1.PublishStreamResponse) publishOutcome {
	switch outcome := resp.GetOutcome().(type) {
	case *eventbusv1.PublishStreamResponse_Published:
		return publishOutcome{results: outcome.Published.GetResults()}
	case *eventbusv1.PublishStreamResponse_Error:
		return publishOutcome{err: messageError(outcome.Error)}
	default:
		return publishOutcome{err: status.Error(codes.Internal, "eventbus: a PublishStream answer without an outcome")}
	}
}

// messageError is the status error of a message's PublishError, with its field violations as
// an errdetails.BadRequest, as a Publish call would carry them.
func messageError(e *eventbusv1.PublishError) error {
	code := codes.Code(e.GetCode())
	if code == codes.OK {
		code = codes.Unknown // an error answer always fails its Publish
	}
	st := status.New(code, e.GetMessage())
	if len(e.GetFieldViolations()) == 0 {
		return st.Err()
	}
	bad := &errdetails.BadRequest{}
	for _, v := range e.GetFieldViolations() {
		bad.FieldViolations = append(bad.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       v.GetField(),
			Description: v.GetDescription(),
		})
	}
	if detailed, err := st.WithDetails(bad); err == nil {
		st = detailed
	}
	return st.Err()
}
