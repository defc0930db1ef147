"""The build layer: buildpacks, version resolution, base images, build contexts and the builders."""
