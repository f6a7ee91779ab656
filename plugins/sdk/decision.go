package sdk

import "slices"

// Decision is what OnRequest returns: continue, with edits to the request on its way upstream,
// or respond now (Reply set). Build one with [Continue] or [Respond] and the With/Header
// methods; each method returns a new Decision and never changes the one it was called on, so a
// Decision kept in a variable can be reused as a template.
//
// The host applies a continuing decision's edits in the order remove, set, add.
type Decision struct {
	// Reply, when set, ends the request with this response; the edits below are ignored.
	Reply *Reply
	// SetHeaders replace every value of their header on the upstream request.
	SetHeaders []Header
	// AddHeaders append a value, keeping the existing ones.
	AddHeaders    []Header
	RemoveHeaders []string
	// RewritePath, when not empty, replaces the upstream request's path.
	RewritePath string
	// Consumer records the consumer this plugin authenticated: later filters, plugins and the
	// access log see it as Identity.Consumer.
	Consumer string
}

// Reply is a response a plugin sends instead of calling the upstream. Keep the body small (an
// error message, a redirect): the whole call is one gRPC message, limited to 4 MiB.
type Reply struct {
	Status  int
	Headers []Header
	Body    []byte
}

// Continue lets the request go on unchanged; add edits with the Decision's methods.
func Continue() Decision { return Decision{} }

// Respond ends the request with status and body (sent as text/plain unless a Content-Type is
// set with SetHeader).
func Respond(status int, body string) Decision {
	r := &Reply{Status: status}
	if body != "" {
		r.Body = []byte(body)
		r.Headers = []Header{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}
	}
	return Decision{Reply: r}
}

// Responds reports whether d ends the request.
func (d Decision) Responds() bool { return d.Reply != nil }

// SetHeader sets a header, replacing its other values: on the reply when d responds, on the
// upstream request when it continues.
func (d Decision) SetHeader(name, value string) Decision {
	if d.Reply != nil {
		r := *d.Reply
		r.Headers = append(slices.DeleteFunc(slices.Clone(r.Headers), func(h Header) bool {
			return equalFold(h.Name, name)
		}), Header{Name: name, Value: value})
		d.Reply = &r
		return d
	}
	// Clip before append so that two Decisions derived from one template never share (and
	// overwrite) a backing array.
	d.SetHeaders = append(slices.Clip(d.SetHeaders), Header{Name: name, Value: value})
	return d
}

// AddHeader adds a value to a header: on the reply when d responds, on the upstream request
// when it continues.
func (d Decision) AddHeader(name, value string) Decision {
	if d.Reply != nil {
		r := *d.Reply
		r.Headers = append(slices.Clip(r.Headers), Header{Name: name, Value: value})
		d.Reply = &r
		return d
	}
	d.AddHeaders = append(slices.Clip(d.AddHeaders), Header{Name: name, Value: value})
	return d
}

// RemoveHeader removes a header from the upstream request (a reply has only the headers it
// was given, so there is nothing to remove from it).
func (d Decision) RemoveHeader(name string) Decision {
	d.RemoveHeaders = append(slices.Clip(d.RemoveHeaders), name)
	return d
}

// WithPath rewrites the upstream request's path.
func (d Decision) WithPath(path string) Decision {
	d.RewritePath = path
	return d
}

// WithConsumer records the consumer this plugin authenticated.
func (d Decision) WithConsumer(consumer string) Decision {
	d.Consumer = consumer
	return d
}

// ResponseMutation is what OnResponse returns: edits to the response headers, applied in the
// order remove, set, add. The zero value changes nothing. Like Decision, its methods return a
// new value.
type ResponseMutation struct {
	SetHeaders    []Header
	AddHeaders    []Header
	RemoveHeaders []string
}

// SetHeader sets a response header, replacing its other values.
func (m ResponseMutation) SetHeader(name, value string) ResponseMutation {
	m.SetHeaders = append(slices.Clip(m.SetHeaders), Header{Name: name, Value: value})
	return m
}

// AddHeader adds a value to a response header.
func (m ResponseMutation) AddHeader(name, value string) ResponseMutation {
	m.AddHeaders = append(slices.Clip(m.AddHeaders), Header{Name: name, Value: value})
	return m
}

// RemoveHeader removes a response header.
func (m ResponseMutation) RemoveHeader(name string) ResponseMutation {
	m.RemoveHeaders = append(slices.Clip(m.RemoveHeaders), name)
	return m
}
