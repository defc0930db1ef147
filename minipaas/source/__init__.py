"""What a build reads from the pushed commit: package.json, Procfile, app.json, presets,
the Node.js version, the Dockerfile."""
