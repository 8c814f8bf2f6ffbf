//go:build !nogcs

package main

// gs:// destinations, left out of builds with the tag nogcs (the container
// image, by default): the Google Cloud SDK is about 20 MB of the binary.
import _ "gocloud.dev/blob/gcsblob"
