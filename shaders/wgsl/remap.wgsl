// Pixels moved without arithmetic (crop, flip, rotate): destination (x, y)
// copies source (arg0·x + arg1·y + arg2, arg3·x + arg4·y + arg5), all in
// image coordinates.

fn shade(x: i32, y: i32) -> u32 {
    let sx = pass_args.arg0 * x + pass_args.arg1 * y + pass_args.arg2;
    let sy = pass_args.arg3 * x + pass_args.arg4 * y + pass_args.arg5;
    return load(sx, sy);
}
