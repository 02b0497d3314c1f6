package main

import (
	"context"
	"encoding/json"

	"github.com/iris-cf/iris/models"
	"github.com/iris-cf/iris/stager/docker"
)

// imageStager adapts stager/docker to the staging reporter's ImageStager.
type imageStager struct {
	stager *docker.Stager
}

func (s imageStager) StageImage(ctx context.Context, image, username, password string) (json.RawMessage, *models.StagingError) {
	result, err := s.stager.Stage(ctx, image, username, password)
	if err != nil {
		f := docker.FailureFor(err)
		return nil, &models.StagingError{ID: f.ID, Message: f.Message}
	}
	data, err := json.Marshal(result)
	if err != nil {
		return nil, &models.StagingError{ID: docker.StagingErrorID, Message: "encoding staging result: " + err.Error()}
	}
	return data, nil
}
