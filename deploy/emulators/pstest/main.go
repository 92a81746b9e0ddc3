// Command pstest runs Google's in-memory Pub/Sub server (cloud.google.com/go/pubsub/pstest)
// on a chosen address, for local runs and tests of fraudscore.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/pubsub/pstest"
	pb "google.golang.org/genproto/googleapis/pubsub/v1"
	"google.golang.org/grpc"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8085", "address to listen on (port 0 picks a free one)")
	stdinLifeline := flag.Bool("exit-on-stdin-eof", false, "exit when stdin closes (the launcher died or stopped us)")
	flag.Parse()

	// pstest 0.56 only offers NewServer() on a random port; its exported GServer
	// holds the state, so serve that on our own listener instead.
	fake := pstest.NewServer()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("pstest: listen %s: %v", *addr, err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	pb.RegisterPublisherServer(srv, &fake.GServer)
	pb.RegisterSubscriberServer(srv, &fake.GServer)
	// The first stdout line tells the launcher where we listen.
	fmt.Printf("LISTENING %s\n", lis.Addr().String())
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
	go func() {
		<-stop
		srv.Stop()
		fake.Close()
	}()
	if err := srv.Serve(lis); err != nil {
		log.Fatalf("pstest: serve: %v", err)
	}
}
