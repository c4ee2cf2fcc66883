package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The upstream is the service behind every path the harness measures. It
// runs as a process of its own (`inletsbench upstream`), so that its CPU
// and file descriptors are not the harness's, as a real upstream's are not
// the visitor's.
//
//	GET  /small        a fixed 13-byte body; with ?close, the upstream
//	                   closes the connection after it (Connection: close)
//	GET  /connections  how many connections the upstream has accepted
//	GET  /blob?size=N  N bytes of the pattern (see patternBlock)
//	POST /upload       reads the body, compares every byte with the
//	                   pattern, answers "<size>" or 422 with the offset of
//	                   the first wrong byte
//
// and on a second port an echo server: every byte read is written back.

// smallBody is what /small answers.
const smallBody = "hello, world\n"

// patternBlock is the content of every large body: byte i of a body is
// patternBlock[i % len(patternBlock)]. Both the harness and the upstream
// derive it from a fixed seed, so each can check what the other sent, byte
// for byte, at the speed of a memory compare: a broken transfer cannot
// look fast.
var patternBlock = func() []byte {
	b := make([]byte, 1<<20)
	r := mathrand.NewChaCha8([32]byte{'i', 'n', 'l', 'e', 't', 's'})
	r.Read(b)
	return b
}()

// writePattern writes n bytes of the pattern to w.
func writePattern(w io.Writer, n int64) error {
	for n > 0 {
		chunk := patternBlock[:min(n, int64(len(patternBlock)))]
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		n -= int64(len(chunk))
	}
	return nil
}

// checkPattern reads r to its end and reports how many bytes it read, or
// an error at the first byte that differs from the pattern.
func checkPattern(r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var off int64
	for {
		n, err := r.Read(buf)
		got := buf[:n]
		for len(got) > 0 {
			at := int(off % int64(len(patternBlock)))
			want := patternBlock[at:min(len(patternBlock), at+len(got))]
			if !bytes.Equal(got[:len(want)], want) {
				for i := range want {
					if got[i] != want[i] {
						return off + int64(i), fmt.Errorf("byte %d differs from the pattern", off+int64(i))
					}
				}
			}
			off += int64(len(want))
			got = got[len(want):]
		}
		if err == io.EOF {
			return off, nil
		}
		if err != nil {
			return off, err
		}
	}
}

// accepted counts the HTTP connections the upstream has accepted: a proxy
// that does not keep its connections alive shows here.
var accepted atomic.Int64

func countConns(_ net.Conn, state http.ConnState) {
	if state == http.StateNew {
		accepted.Add(1)
	}
}

func upstreamHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /connections", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strconv.FormatInt(accepted.Load(), 10))
	})
	mux.HandleFunc("GET /small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(smallBody)))
		if r.URL.Query().Has("close") {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, smallBody)
	})
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		size, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		if err != nil || size < 0 {
			http.Error(w, "size=N is required", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		writePattern(w, size)
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := checkPattern(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		io.WriteString(w, strconv.FormatInt(n, 10))
	})
	return mux
}

// serveEcho writes back every byte each connection sends, until it closes.
func serveEcho(ln net.Listener) error {
	for {
		conn, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			// Out of file descriptors, say: the connections already open
			// keep working; wait a little, as net/http does.
			log.Printf("echo: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer conn.Close()
			// A plain copy with a small buffer: io.Copy between two
			// TCPConns would splice through a pipe, two more descriptors
			// per connection.
			buf := make([]byte, 1024)
			io.CopyBuffer(struct{ io.Writer }{conn}, struct{ io.Reader }{conn}, buf)
		}()
	}
}

// upstreamMain is `inletsbench upstream --http ADDR --echo ADDR`.
func upstreamMain(args []string) {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	httpAddr := fs.String("http", "127.0.0.1:0", "address of the HTTP upstream")
	echoAddr := fs.String("echo", "127.0.0.1:0", "address of the echo server")
	httpsAddr := fs.String("https", "", "address of the same HTTP upstream over TLS, with a self-signed certificate for "+tlsName)
	fs.Parse(args)

	if *httpsAddr != "" {
		cert, err := selfSigned(tlsName)
		if err != nil {
			log.Fatal(err)
		}
		tlsSrv := &http.Server{Addr: *httpsAddr, Handler: upstreamHandler(),
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}}
		go func() { log.Fatal(tlsSrv.ListenAndServeTLS("", "")) }()
	}

	echo, err := net.Listen("tcp", *echoAddr)
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(serveEcho(echo)) }()
	srv := &http.Server{Addr: *httpAddr, Handler: upstreamHandler(), ConnState: countConns}
	log.Fatal(srv.ListenAndServe())
}

// tlsName is the server name of the upstream's TLS port: scenario 10
// passes TLS for it through caddy-l4's route.
const tlsName = "a.bench.test"

// selfSigned makes a certificate for name, valid for a day.
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
