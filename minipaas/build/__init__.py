"""What makes images: buildpacks, base images, build contexts and the builders; the images minipaas makes for
itself; docs sites rendered (docsite/). What is read from the commit is source/'s."""
