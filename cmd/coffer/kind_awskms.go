package main

// The aws-kms master key: aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID.
import _ "github.com/cofferfs/coffer/keys/awskms"
