package main

import (
	"context"
	"errors"
)

func (h *harness) fault(ctx context.Context) (string, error)     { return "", errNotPorted }
func (h *harness) ratelimit(ctx context.Context) (string, error) { return "", errNotPorted }
func (h *harness) jwt(ctx context.Context) (string, error)       { return "", errNotPorted }
func (h *harness) consul(ctx context.Context) (string, error)    { return "", errNotPorted }
func (h *harness) sidecar(ctx context.Context) (string, error)   { return "", errNotPorted }
func (h *harness) plugins(ctx context.Context) (string, error)   { return "", errNotPorted }

var errNotPorted = errors.New("scenario not ported to the Go harness yet; use the bash one")
