// Package bbswire reads single fields of BBS's protobuf-encoded models
// without decoding them whole: CC's sync lists handle 100,000 encoded
// scheduling infos per call and need only their process guids.
package bbswire

import (
	"code.cloudfoundry.org/bbs/models"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers in an encoded DesiredLRPSchedulingInfo.
const (
	schedulingInfoKey    protowire.Number = 1 // DesiredLRPSchedulingInfo.desired_lrp_key
	keyProcessGUID       protowire.Number = 1 // DesiredLRPKey.process_guid
	schedulingInfoRoutes protowire.Number = 5 // DesiredLRPSchedulingInfo.routes
)

// SchedulingInfoProcessGUID reads the process guid of an encoded scheduling info
// without decoding the rest (routes, annotation, volume placement). As a
// decoder does, the last occurrence wins (a message's fields may repeat,
// embedded ones merging).
func SchedulingInfoProcessGUID(info []byte) ([]byte, error) {
	var guid []byte
	err := eachBytesField(info, schedulingInfoKey, func(key []byte) error {
		return eachBytesField(key, keyProcessGUID, func(value []byte) error {
			guid = value
			return nil
		})
	})
	return guid, err
}

// SchedulingInfoRoutes reads the routes of an encoded scheduling info
// without decoding the rest; nil if it has none. Repeated routes fields
// merge, as a decoder merges them.
func SchedulingInfoRoutes(info []byte) (models.Routes, error) {
	var routes models.Routes
	err := eachBytesField(info, schedulingInfoRoutes, func(value []byte) error {
		var part models.Routes
		if err := part.Unmarshal(value); err != nil {
			return err
		}
		if routes == nil {
			routes = models.Routes{}
		}
		for router, entries := range part {
			routes[router] = entries
		}
		return nil
	})
	return routes, err
}

// eachBytesField calls fn with the value of every length-delimited field
// numbered number in the encoded message msg, in order.
func eachBytesField(msg []byte, number protowire.Number, fn func([]byte) error) error {
	for len(msg) > 0 {
		num, wireType, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		if num == number && wireType == protowire.BytesType {
			value, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := fn(value); err != nil {
				return err
			}
			msg = msg[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, wireType, msg)
		if m < 0 {
			return protowire.ParseError(m)
		}
		msg = msg[m:]
	}
	return nil
}
