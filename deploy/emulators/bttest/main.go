// Command bttest runs Google's in-memory Bigtable server (cloud.google.com/go/bigtable/bttest)
// on a chosen address, for local runs and tests of fraudscore.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/bigtable/bttest"
	"google.golang.org/grpc"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8086", "address to listen on (port 0 picks a free one)")
	stdinLifeline := flag.Bool("exit-on-stdin-eof", false, "exit when stdin closes (the launcher died or stopped us)")
	flag.Parse()

	srv, err := bttest.NewServer(*addr, grpc.MaxRecvMsgSize(64<<20))
	if err != nil {
		log.Fatalf("bttest: listen %s: %v", *addr, err)
	}
	// The first stdout line tells the launcher where we listen.
	fmt.Printf("LISTENING %s\n", srv.Addr)
	os.Stdout.Sync()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	if *stdinLifeline {
		// A launcher killed with SIGKILL cannot signal us; its end of the pipe closing can.
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}
	<-stop
	srv.Close()
}
