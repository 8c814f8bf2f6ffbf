package main

// The storage drivers fhirdeid supports. Only the command imports them; the
// storage package works with any gocloud.dev/blob driver. Google Cloud
// Storage is in drivers_gcs.go: its SDK is about 20 MB of the binary, and
// the container image leaves it out (build tag nogcs).
import (
	_ "gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob"
)
