package main

// The storage drivers fhirdeid supports. Only the command imports them; the
// storage package works with any gocloud.dev/blob driver.
import (
	_ "gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob"
)
