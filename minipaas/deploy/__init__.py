"""The push path: the hook's decision, the build's release rolled out (placement, health, switch, retirement),
rollback, canaries, review apps, and an app's creation and destruction."""
