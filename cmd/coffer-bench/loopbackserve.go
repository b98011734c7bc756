//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// loopbackCommand is the first argument that makes this program serve a
// loopback mount instead of benchmarking.
const loopbackCommand = "loopback"

// loopbackMaxWrite and loopbackTimeout match coffer's mount options, so
// that the floor differs from coffer only by what coffer does.
const (
	loopbackMaxWrite = 1 << 20
	loopbackTimeout  = time.Second
)

// serveLoopback mounts go-fuse's loopback of BACKING on MOUNTPOINT and
// serves it until unmounted or signalled.
func serveLoopback(args []string) int {
	fl := flag.NewFlagSet(loopbackCommand, flag.ContinueOnError)
	passthrough := fl.Bool("passthrough", false, "let the kernel pass reads and writes through to the backing files")
	cpuprofile := fl.String("cpuprofile", "", "write a CPU profile to this file")
	debug := fl.Bool("debug", false, "log every FUSE request on stderr")
	if err := fl.Parse(args); err != nil {
		return exitUsage
	}
	if fl.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: coffer-bench loopback [-passthrough] [-debug] [-cpuprofile FILE] BACKING MOUNTPOINT")
		return exitUsage
	}

	if err := loopback(fl.Arg(0), fl.Arg(1), *passthrough, *debug, *cpuprofile); err != nil {
		fmt.Fprintf(os.Stderr, "coffer-bench loopback: error: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func loopback(backing, mnt string, passthrough, debug bool, cpuprofile string) error {
	root, err := gofs.NewLoopbackRoot(backing)
	if err != nil {
		return fmt.Errorf("failed to create loopback root: %w", err)
	}
	node := &bufferedNode{LoopbackNode: root.(*gofs.LoopbackNode)}
	node.RootData.RootNode = node

	timeout := loopbackTimeout
	opts := &gofs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: fuse.MountOptions{
			FsName:   backing,
			Name:     "coffer-bench-loopback",
			MaxWrite: loopbackMaxWrite,
			Debug:    debug,
		},
	}
	if !passthrough {
		opts.MountOptions.DisabledCapabilities |= fuse.CAP_PASSTHROUGH
	}

	if cpuprofile != "" {
		stop, err := startProfile(cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	srv, err := gofs.Mount(mnt, node, opts)
	if err != nil {
		return fmt.Errorf("failed to mount: %w", err)
	}
	unmountOnSignal(srv)
	srv.Wait()
	return nil
}

// unmountOnSignal unmounts srv on SIGINT or SIGTERM.
func unmountOnSignal(srv *fuse.Server) {
	ctx, _ := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		_ = srv.Unmount()
	}()
}

// startProfile starts a CPU profile into path and returns its stop function.
func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("failed to create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to start CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// bufferedNode is a loopback node that opens backing files without O_DIRECT.
// coffer and gocryptfs both drop O_DIRECT (their backing I/O is not
// aligned), so RANDREAD's O_DIRECT reads reach the backing page cache on
// all three; passing O_DIRECT on would measure the disk instead.
type bufferedNode struct {
	*gofs.LoopbackNode
}

var (
	_ gofs.NodeOpener      = (*bufferedNode)(nil)
	_ gofs.NodeCreater     = (*bufferedNode)(nil)
	_ gofs.NodeWrapChilder = (*bufferedNode)(nil)
)

// Open implements gofs.NodeOpener.
func (n *bufferedNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return n.LoopbackNode.Open(ctx, flags&^syscall.O_DIRECT)
}

// Create implements gofs.NodeCreater.
func (n *bufferedNode) Create(ctx context.Context, name string, flags, mode uint32,
	out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return n.LoopbackNode.Create(ctx, name, flags&^syscall.O_DIRECT, mode, out)
}

// WrapChild implements gofs.NodeWrapChilder: every node of the tree is a
// bufferedNode.
func (n *bufferedNode) WrapChild(_ context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	if ln, ok := ops.(*gofs.LoopbackNode); ok {
		return &bufferedNode{LoopbackNode: ln}
	}
	return ops
}
