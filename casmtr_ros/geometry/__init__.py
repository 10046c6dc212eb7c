"""Camera models and undistortion, relative pose (essential, PnP, rotation-only), covariances, SE(3) helpers."""
